"""Pronunciation results as an app's contract: the caller's ids, every score, and a view with the status.

`pronunciation_results` gains the caller's external ids (`content_type_id`,
`object_id`: a Django generic relation), the source object's key
(`audio_file`), the scores that were computed but not kept (rhythm and energy
similarity, the mispronounced ratio, the recognised text) and `scored_at`.
Rows are now written when a job is accepted, before it is scored, so the score
columns become nullable (NULL: not scored yet, or not measured). The view
`pronunciation_attempts` adds each attempt's job state (`status`) and the
reason of a failure: what an app reads.

Rows written before this revision were written when scored: `scored_at` is
their `created_at`, `audio_file` is derived from `source_uri`, and the scores
this revision adds stay NULL (not measured then).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SCORES = (
    "overall_score",
    "accuracy_score",
    "fluency_score",
    "completeness_score",
    "prosody_score",
    "speed_ratio",
    "pause_similarity",
    "pitch_similarity",
)

# Written out (not generated from schema.py): a released revision never changes.
VIEW = """
CREATE VIEW pronunciation_attempts AS
SELECT
    p.job_id AS job_id,
    j.state AS status,
    j.error AS error,
    j.error_code AS error_code,
    j.pipeline AS pipeline,
    p.user_id AS user_id,
    p.content_type_id AS content_type_id,
    p.object_id AS object_id,
    p.audio_file AS audio_file,
    p.content_type AS content_type,
    p.level AS level,
    p.title AS title,
    p.line AS line,
    p.source_uri AS source_uri,
    p.reference_uri AS reference_uri,
    p.reference_text AS reference_text,
    p.recognized_text AS recognized_text,
    p.overall_score AS overall_score,
    p.accuracy_score AS accuracy_score,
    p.fluency_score AS fluency_score,
    p.completeness_score AS completeness_score,
    p.prosody_score AS prosody_score,
    p.speed_ratio AS speed_ratio,
    p.pause_similarity AS pause_similarity,
    p.pitch_similarity AS pitch_similarity,
    p.rhythm_similarity AS rhythm_similarity,
    p.energy_similarity AS energy_similarity,
    p.mispronounced_ratio AS mispronounced_ratio,
    p.mispronounced_words AS mispronounced_words,
    p.feedback AS feedback,
    j.created_at AS created_at,
    p.scored_at AS scored_at,
    j.ended_at AS ended_at
FROM pronunciation_results p
JOIN jobs j ON j.id = p.job_id
"""


def upgrade() -> None:
    with op.batch_alter_table("pronunciation_results") as batch:
        batch.add_column(sa.Column("content_type_id", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("object_id", sa.String(200), nullable=True))
        batch.add_column(sa.Column("audio_file", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("recognized_text", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("rhythm_similarity", sa.Float(), nullable=True))
        batch.add_column(sa.Column("energy_similarity", sa.Float(), nullable=True))
        batch.add_column(sa.Column("mispronounced_ratio", sa.Float(), nullable=True))
        batch.add_column(sa.Column("scored_at", sa.DateTime(timezone=True), nullable=True))
        for name in SCORES:
            batch.alter_column(name, existing_type=sa.Float(), nullable=True)
        batch.create_index("ix_pronunciation_object", ["content_type_id", "object_id", "user_id"])
    op.execute("UPDATE pronunciation_results SET scored_at = created_at")
    if op.get_bind().dialect.name == "postgresql":
        key = "substring(source_uri from '^s3://[^/]+/(.*)$')"
    else:  # SQLite: what follows the bucket, i.e. the first '/' after "s3://"
        key = "substr(source_uri, 6 + instr(substr(source_uri, 6), '/'))"
    op.execute(f"UPDATE pronunciation_results SET audio_file = {key} WHERE source_uri LIKE 's3://%/%'")
    op.execute(VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW pronunciation_attempts")
    # The previous schema holds scored attempts only, with 0 where a similarity was not measured.
    op.execute("DELETE FROM pronunciation_results WHERE overall_score IS NULL")
    for name in SCORES:
        op.execute(f"UPDATE pronunciation_results SET {name} = 0 WHERE {name} IS NULL")
    with op.batch_alter_table("pronunciation_results") as batch:
        batch.drop_index("ix_pronunciation_object")
        for name in SCORES:
            batch.alter_column(name, existing_type=sa.Float(), nullable=False)
        for column in (
            "scored_at",
            "mispronounced_ratio",
            "energy_similarity",
            "rhythm_similarity",
            "recognized_text",
            "audio_file",
            "object_id",
            "content_type_id",
        ):
            batch.drop_column(column)
