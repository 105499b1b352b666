"""Every setting of every service as environment variables (used by the README and its test).

    python -m shared.settings_doc           prints a Markdown table
    python -m shared.settings_doc --write   rewrites the table in README.md
"""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import BaseModel
from pydantic_settings import BaseSettings

from shared.settings import KafkaSettings, LogSettings, MongoSettings, RetrySettings

NESTED = (KafkaSettings, MongoSettings, LogSettings, RetrySettings)


def service_settings() -> list[type[BaseSettings]]:
    from services.gateway.settings import GatewaySettings
    from services.ingestion.settings import IngestionSettings
    from services.linking.settings import LinkingSettings
    from services.storage.settings import StorageSettings
    from shared.cli import CliSettings

    from services.newsletter.settings import NewsletterSettings
    from services.narration.settings import NarrationSettings

    return [IngestionSettings, StorageSettings, LinkingSettings, GatewaySettings, NewsletterSettings, NarrationSettings, CliSettings]


def env_vars(model: type[BaseModel]) -> Iterator[tuple[str, str, str]]:
    """(variable, default, description) for the plain fields of a settings class."""
    prefix = model.model_config.get("env_prefix", "")
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            continue  # nested blocks are listed under their own prefix
        default = field.get_default(call_default_factory=True)
        yield (prefix + name).upper(), repr(default) if not isinstance(default, str) else default, field.description or ""


def markdown() -> str:
    lines = ["| variable | default | notes |", "|---|---|---|"]
    for model in (*NESTED, *service_settings()):
        for var, default, notes in env_vars(model):
            lines.append(f"| `{var}` | `{default}` | {notes} |")
    return "\n".join(lines)


def write_readme(path: str = "README.md") -> None:
    """Replace the settings table (the one starting with its header row) in ``path``."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    start = lines.index("| variable | default | notes |")
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    lines[start:end] = markdown().split("\n")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    import sys

    if "--write" in sys.argv[1:]:
        write_readme()
    else:
        print(markdown())
