"""An English-learning app's models over Soriflow's results.

`Line` is the app's own content (a line of a lesson the learner reads aloud);
`UserPronunciation` is not the app's table: it is an unmanaged model over the
`pronunciation_attempts` view of Soriflow's job store (docs/pronunciation-results.md),
with the columns the app used to keep itself (`content_type_id`/`object_id`,
`audio_file`, `rhythm_similarity`, `mispronounced_ratio`, `status`). Django never
creates, alters or writes it; Soriflow fills it as learners' recordings are scored.
"""

from __future__ import annotations

from django.contrib.contenttypes.fields import GenericForeignKey, GenericRelation
from django.contrib.contenttypes.models import ContentType
from django.db import models


class Line(models.Model):
    """A line of a lesson, which learners record and upload (`upload_key`: the seed app's layout)."""

    kind = models.CharField(max_length=50)  # "book", "drama", ...: the key's {content_type}
    level = models.PositiveIntegerField()
    title = models.CharField(max_length=200)
    number = models.PositiveIntegerField()
    text = models.TextField()
    pronunciations = GenericRelation("UserPronunciation", related_query_name="line")

    def upload_key(self, user_id: int) -> str:
        """Where the app uploads a learner's recording of this line (the seed app's layout)."""
        title = self.title.replace(" ", "_")
        return f"users/{user_id}/{self.kind}/level_{self.level}/{title}/audio_line_{self.number}.wav"

    def upload_metadata(self) -> dict[str, str]:
        """Object metadata (x-amz-meta-*) that carries the generic relation into Soriflow's results."""
        content_type = ContentType.objects.get_for_model(self)
        return {"content-type-id": str(content_type.pk), "object-id": str(self.pk)}


class UserPronunciation(models.Model):
    """One scored (or failed, or still running) recording, read from Soriflow's job store."""

    class Status(models.TextChoices):
        QUEUED = "QUEUED"
        RUNNING = "RUNNING"
        SUCCEEDED = "SUCCEEDED"
        PARTIAL = "PARTIAL"
        FAILED = "FAILED"
        CANCELLED = "CANCELLED"

    job_id = models.CharField(primary_key=True, max_length=36)
    status = models.CharField(max_length=20, choices=Status.choices)
    error = models.TextField()
    error_code = models.CharField(max_length=40)
    # Text, as the key and the object metadata carry it: filter with str(user.pk).
    user_id = models.CharField(max_length=200)
    content_type = models.ForeignKey(ContentType, on_delete=models.DO_NOTHING, db_constraint=False, null=True)
    object_id = models.CharField(max_length=200, null=True)
    content_object = GenericForeignKey("content_type", "object_id")
    audio_file = models.FileField(max_length=1024)  # the recording's key in the input bucket
    reference_uri = models.TextField()
    reference_text = models.TextField()
    recognized_text = models.TextField()
    overall_score = models.FloatField(null=True)
    accuracy_score = models.FloatField(null=True)
    fluency_score = models.FloatField(null=True)
    completeness_score = models.FloatField(null=True)
    prosody_score = models.FloatField(null=True)
    speed_ratio = models.FloatField(null=True)
    pause_similarity = models.FloatField(null=True)
    pitch_similarity = models.FloatField(null=True)
    rhythm_similarity = models.FloatField(null=True)
    energy_similarity = models.FloatField(null=True)
    mispronounced_ratio = models.FloatField(null=True)
    mispronounced_words = models.JSONField()
    feedback = models.JSONField()
    created_at = models.DateTimeField()
    scored_at = models.DateTimeField(null=True)
    ended_at = models.DateTimeField(null=True)

    class Meta:
        managed = False
        db_table = "pronunciation_attempts"
        ordering = ["-created_at"]

    @property
    def done(self) -> bool:
        return self.status not in (self.Status.QUEUED, self.Status.RUNNING)
