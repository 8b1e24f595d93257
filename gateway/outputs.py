"""Storing a job's outputs: one folder per job id, marked so they never trigger a pipeline.

Every object carries `soriflow-output` and `soriflow-job-id` metadata: the
consumer skips events for such objects (the S3 infinite-loop guard at run
time), and a person finding a file can tell which job made it. The records
of a stage's outputs are stored with the stage's completion, in one
transaction (`JobStore.complete_stage`).
"""

from __future__ import annotations

import asyncio

from soriflow.gateway.stages import OutputFile
from soriflow.gateway.store import OutputRecord
from soriflow.storage import ObjectStore, S3Uri

OUTPUT_MARKER = "soriflow-output"
JOB_ID_KEY = "soriflow-job-id"


class OutputWriter:
    def __init__(self, *, objects: ObjectStore, output_uri: str) -> None:
        self.objects = objects
        self.root = S3Uri.parse(output_uri)

    def uri_for(self, job_id: str, name: str) -> S3Uri:
        return self.root.join(job_id, name)

    async def write(self, job_id: str, file: OutputFile) -> OutputRecord:
        """Puts one output in S3; the caller stores its record with the stage's completion."""
        uri = self.uri_for(job_id, file.name)
        await asyncio.to_thread(
            self.objects.write_bytes,
            uri,
            file.data,
            content_type=file.content_type,
            metadata={OUTPUT_MARKER: "1", JOB_ID_KEY: job_id},
        )
        return OutputRecord(file.name, str(uri), file.content_type, len(file.data))
