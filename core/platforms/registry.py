"""How the app gets an ad platform by name: ``get_platform("sandbox", engine, workspace_id)``.

Each entry maps a platform name to a factory ``(engine, workspace_id, **credentials) -> AdPlatform``.
Factories import their SDK lazily, so listing platforms never imports facebook-business or
google-ads. Credentials are passed in by the caller (the page reads `st.secrets` / environment);
`core` never reads secrets itself, and a factory must never log them.

To add a platform (the Meta / Google adapters do this):
    1. write ``_meta_factory(engine, workspace_id, **credentials)`` below (import the adapter inside it),
    2. add it to ``_FACTORIES`` under its name ("meta", "google"),
or call ``register_platform(name, factory)`` at import time of your adapter module.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.engine import Engine

from .base import AdPlatform

#: The platform used when none is chosen: works with no credentials.
DEFAULT_PLATFORM = "sandbox"

PlatformFactory = Callable[..., AdPlatform]


def _sandbox_factory(engine: Engine, workspace_id: str, **options) -> AdPlatform:
    """The simulated account; options: account_id (default "sandbox-1"), seed, n_meta, n_google, ..."""
    from .sandbox import SandboxPlatform

    return SandboxPlatform(engine, workspace_id, **options)


def _meta_factory(engine: Engine, workspace_id: str, **credentials) -> AdPlatform:
    """Meta Marketing API (facebook-business); see `core.platforms.meta.make_platform`."""
    from .meta import make_platform

    return make_platform(engine, workspace_id, **credentials)


def _google_factory(engine: Engine, workspace_id: str, **credentials) -> AdPlatform:
    """Google Ads API (google-ads); see `core.platforms.google.make_platform`."""
    from .google import make_platform

    return make_platform(engine, workspace_id, **credentials)


# name -> factory. The Meta / Google engineer adds "meta" / "google" here (lazy imports inside
# their factories, credentials as keyword arguments, e.g. access_token=..., account_id=...).
_FACTORIES: dict[str, PlatformFactory] = {
    "sandbox": _sandbox_factory,
    "meta": _meta_factory,
    "google": _google_factory,
}


def register_platform(name: str, factory: PlatformFactory) -> None:
    """Make ``factory`` reachable as ``get_platform(name, ...)`` (replaces an existing entry)."""
    if not name or not name.replace("_", "").isalnum():
        raise ValueError(f"platform name must be letters, digits or '_', got {name!r}")
    _FACTORIES[name] = factory


def available_platforms() -> list[str]:
    """Names that `get_platform` accepts, the default first."""
    return sorted(_FACTORIES, key=lambda n: (n != DEFAULT_PLATFORM, n))


def get_platform(name: str | None, engine: Engine, workspace_id: str, **credentials) -> AdPlatform:
    """The platform ``name`` (default sandbox) for ``workspace_id``; credentials go to its factory."""
    name = name or DEFAULT_PLATFORM
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise ValueError(f"unknown ad platform {name!r}; available: {', '.join(available_platforms())}") from None
    return factory(engine, workspace_id, **credentials)
