"""The signed-in learner's attempts at a line, as JSON (what a mobile client polls after uploading)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404

from app.models import Line


@login_required
def line_pronunciations(request: HttpRequest, line_id: int) -> JsonResponse:
    line = get_object_or_404(Line, pk=line_id)
    attempts = line.pronunciations.filter(user_id=str(request.user.pk))
    return JsonResponse(
        {
            "line": line.text,
            "attempts": [
                {
                    "status": a.status,
                    "error": a.error,
                    "audio_file": a.audio_file.name,
                    "overall_score": a.overall_score,
                    "rhythm_similarity": a.rhythm_similarity,
                    "mispronounced_ratio": a.mispronounced_ratio,
                    "mispronounced_words": a.mispronounced_words,
                    "feedback": a.feedback,
                    "created_at": a.created_at.isoformat(),
                }
                for a in attempts
            ],
        }
    )
