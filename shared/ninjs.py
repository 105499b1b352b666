"""The upstream contract: one IPTC ninjs 3.x item (camelCase JSON) per Kafka message.

Only the fields KazPost uses are modelled; other ninjs properties are accepted and ignored.
Validation is strict where it matters (types, enums, sizes, time zones) so that nothing invalid
passes, and every rejection carries a readable reason.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

MAX_URI = 2048
MAX_HEADLINE = 1_000
MAX_BODY = 1_000_000  # characters of HTML
MAX_SHORT = 10_000

_BCP47 = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")


def _no_control(value: str) -> str:
    if any(ord(c) < 32 and c not in "\t\n\r" for c in value):
        raise ValueError("contains control characters")
    if "\x00" in value:
        raise ValueError("contains NUL")
    return value


def _bcp47(value: str) -> str:
    if not _BCP47.match(value):
        raise ValueError("not a BCP 47 language tag")
    return value


Uri = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_URI), AfterValidator(_no_control)]
Short = Annotated[str, StringConstraints(max_length=MAX_SHORT), AfterValidator(_no_control)]
Lang = Annotated[str, StringConstraints(strip_whitespace=True, max_length=35), AfterValidator(_bcp47)]


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
        populate_by_name=True,
        allow_inf_nan=False,
        str_max_length=MAX_BODY,
        frozen=True,
    )


class Headline(_Model):
    role: str = "main"
    content_type: Short = Field(default="text/plain", alias="contentType")
    value: Annotated[str, StringConstraints(max_length=MAX_HEADLINE), AfterValidator(_no_control)]


class Description(_Model):
    role: str = "summary"
    content_type: Short = Field(default="text/plain", alias="contentType")
    value: Short


class Body(_Model):
    role: str = "main"
    content_type: Short = Field(default="text/html", alias="contentType")
    value: Annotated[str, StringConstraints(max_length=MAX_BODY)]


class Person(_Model):
    name: Annotated[str, StringConstraints(max_length=300), AfterValidator(_no_control)]
    role: Short | None = None


class Subject(_Model):
    name: Annotated[str, StringConstraints(max_length=200), AfterValidator(_no_control)]
    uri: Short | None = None
    code: Short | None = None
    # KazPost convention (ninjs leaves it open): "section" marks the subject used as the section;
    # other subjects become tags.
    rel: Short | None = None


class InfoSource(_Model):
    name: Short | None = None
    uri: Short | None = None
    role: Short | None = None


class Rendition(_Model):
    href: Annotated[str, StringConstraints(max_length=MAX_URI)]
    content_type: Short | None = Field(default=None, alias="contentType")
    width: int | None = Field(default=None, ge=1, le=100_000)
    height: int | None = Field(default=None, ge=1, le=100_000)


class Association(_Model):
    type: Short | None = None
    uri: Short | None = None
    headlines: list[Headline] = Field(default_factory=list, max_length=10)
    descriptions: list[Description] = Field(default_factory=list, max_length=10)
    renditions: dict[str, Rendition] = Field(default_factory=dict, max_length=20)
    altText: Short | None = None  # noqa: N815 (ninjs field name)
    language: Lang | None = None  # a ``translation*`` association: the translation's language


class NinjsItem(_Model):
    uri: Uri
    type: Literal["text"]
    version: int = Field(ge=1, le=2**53)
    version_created: AwareDatetime = Field(alias="versionCreated")
    first_created: AwareDatetime | None = Field(default=None, alias="firstCreated")
    embargoed_until: AwareDatetime | None = Field(default=None, alias="embargoedUntil")
    pub_status: Literal["usable", "withheld", "canceled"] = Field(alias="pubStatus")
    language: Lang
    headlines: list[Headline] = Field(min_length=1, max_length=20)
    descriptions: list[Description] = Field(default_factory=list, max_length=20)
    bodies: list[Body] = Field(default_factory=list, max_length=10)
    by: Annotated[str, StringConstraints(max_length=1_000), AfterValidator(_no_control)] | None = None
    people: list[Person] = Field(default_factory=list, max_length=100)
    subjects: list[Subject] = Field(default_factory=list, max_length=100)
    info_sources: list[InfoSource] = Field(default_factory=list, alias="infoSources", max_length=50)
    copyright_notice: Short | None = Field(default=None, alias="copyrightNotice")
    associations: dict[str, Association] = Field(default_factory=dict, max_length=50)

    @model_validator(mode="after")
    def _check_roles(self) -> "NinjsItem":
        if self.main_headline is None or not self.main_headline.strip():
            raise ValueError("headlines: a non-empty entry with role 'main' is required")
        if self.pub_status == "usable":
            body = self.main_body
            if body is None:
                raise ValueError("bodies: a usable item needs an entry with role 'main'")
            if "html" not in body.content_type.lower():
                raise ValueError("bodies: the main body must be text/html")
        return self

    @property
    def main_headline(self) -> str | None:
        for h in self.headlines:
            if h.role == "main":
                return h.value
        return None

    @property
    def summary(self) -> str | None:
        for d in self.descriptions:
            if d.role in ("summary", "standfirst"):
                return d.value
        return None

    @property
    def main_body(self) -> Body | None:
        for b in self.bodies:
            if b.role == "main":
                return b
        return None

