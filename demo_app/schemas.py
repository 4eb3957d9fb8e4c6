"""Request models (pydantic): what the API accepts, field by field.

They are the single source for validation at the edge and for ``/openapi.json``.
Messages never repeat the input, so nothing typed into a password field comes back.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_core import PydanticCustomError
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import RequestEntityTooLarge

from . import media

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s.]{2,}$")

Plan = Literal["free", "standard", "premium"]
#: The same rule as the display-name validator (no Cc control characters), for /openapi.json.
_NO_CONTROL = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"


def _invalid(message: str) -> PydanticCustomError:
    """A field error whose message is shown as written (no "Value error, " prefix)."""
    return PydanticCustomError("value_error", message)


class SignupForm(BaseModel):
    """``POST /api/signup`` (JSON or form fields)."""

    model_config = ConfigDict(str_strip_whitespace=True, extra="ignore")

    email: str = Field(max_length=254, description="Where we reach you.",
                       json_schema_extra={"format": "email"})
    display_name: str = Field(min_length=1, max_length=40, description="Shown to other viewers.",
                              json_schema_extra={"pattern": _NO_CONTROL})
    password: SecretStr = Field(json_schema_extra={"format": "password", "minLength": 10, "maxLength": 128},
                                description="10 to 128 characters; stored only as a scrypt hash.")
    plan: Plan = Field(description="Subscription plan.")

    @field_validator("email")
    @classmethod
    def _email_shape(cls, value: str) -> str:
        if not _EMAIL.fullmatch(value):
            raise _invalid("must be an email address like name@example.com")
        return value.lower()

    @field_validator("password")
    @classmethod
    def _password_length(cls, value: SecretStr) -> SecretStr:
        if not 10 <= len(value.get_secret_value()) <= 128:  # the message never says how long it was
            raise _invalid("must be 10 to 128 characters long")
        return value

    @field_validator("display_name")
    @classmethod
    def _printable(cls, value: str) -> str:
        if any(unicodedata.category(ch) == "Cc" for ch in value):
            raise _invalid("must not contain control characters")
        return value


class ProgressBody(BaseModel):
    """``PUT /api/progress/<title_id>``."""

    model_config = ConfigDict(extra="forbid")

    # strict: a JSON number only (true or "42" are not positions; the document says number).
    position_s: float = Field(ge=0, le=7 * 24 * 3600, allow_inf_nan=False, strict=True,
                              description="Seconds from the start of the title.")


class UploadForm(BaseModel):
    """``POST /api/uploads`` (multipart): the video and its duration in seconds."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    file: FileStorage
    duration: float = Field(gt=0, le=24 * 3600, allow_inf_nan=False,
                            description="Length of the video in seconds.")

    @field_validator("file")
    @classmethod
    def _a_video(cls, value: FileStorage) -> FileStorage:
        declared = value.mimetype
        if declared not in media.ACCEPTED_TYPES:
            raise _invalid(f"must be one of: {', '.join(sorted(media.ACCEPTED_TYPES))}")
        head = value.stream.read(16)
        value.stream.seek(0)
        if not head:
            raise _invalid("must not be empty")
        if media.sniff(head) != media.ACCEPTED_TYPES[declared]:
            raise _invalid(f"content is not a {declared} file")
        return value

    def size(self) -> int:
        stream = self.file.stream
        stream.seek(0, 2)
        size = stream.tell()
        stream.seek(0)
        return size

    def check_size(self, limit: int) -> None:
        """413 when the file is over ``limit`` bytes."""
        if self.size() > limit:
            raise RequestEntityTooLarge(f"The file is larger than the limit of {limit} bytes.")

    @property
    def container(self) -> str:
        return media.ACCEPTED_TYPES[self.file.mimetype]
