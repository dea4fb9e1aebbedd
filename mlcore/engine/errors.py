"""Exception hierarchy the engine raises, each carrying a stable machine-readable code."""

from __future__ import annotations


class EngineError(Exception):
    """Base for every error the engine raises on purpose.

    ``fields`` maps an input name (a feature, a CSV column, a manifest key) to a short
    reason so that a form or an API response can attach the message to the right place.
    """

    default_code = "invalid"

    def __init__(
        self, message: str, *, fields: dict[str, str] | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.fields: dict[str, str] = dict(fields or {})
        self.code = code if code is not None else self.default_code

    def __str__(self) -> str:
        return self.message


class DataError(EngineError):
    """Training data (usually an uploaded CSV) cannot be used as it is."""

    default_code = "invalid_data"


class SchemaError(EngineError):
    """Prediction inputs or a manifest do not match the model's schema."""

    default_code = "invalid_input"


class ArtifactError(EngineError):
    """A stored model artifact cannot be written, read or trusted."""

    default_code = "artifact_error"


class IntegrityError(ArtifactError):
    """The artifact's SHA-256 differs from the one recorded when it was registered."""

    default_code = "integrity"


class ArtifactMissingError(ArtifactError):
    """The artifact file recorded for a model version is not on disk."""

    default_code = "artifact_missing"


class VersionMismatchError(ArtifactError):
    """The artifact was trained under a different scikit-learn version than the installed one."""

    default_code = "version_mismatch"


class UntrustedArtifactError(ArtifactError):
    """A skops artifact references types outside the engine's allow-list."""

    default_code = "untrusted"
