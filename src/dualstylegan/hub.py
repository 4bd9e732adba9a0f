"""Style packs by name: a style name, a local folder or a Hugging Face repo id → the files of one style pack.

What a pack holds and where local packs live is :mod:`dualstylegan.packs`; which styles are official and where the
authors publish each is :mod:`dualstylegan.styles`. Seven styles are on the Hugging Face Hub (``CVPR/DualStyleGAN``);
the others, every ``sampler.pt`` and ``encoder_wplus.pt`` are only on the authors' Google Drive and are read from
``models_home()/models/``. Downloads go through ``huggingface_hub.hf_hub_download``: cached, resumable, pinned to a
revision whose commit is recorded.
"""
from __future__ import annotations

import logging
import os
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from . import styles
from .packs import (
    CODES,
    CODES_WANTED,
    ENCODER,
    ENCODER_WPLUS,
    GENERATOR,
    INSTYLE_CODES,
    PACK_FILES,
    PROJECT_URL,
    REFINED_CODES,
    SAMPLER,
    StylePackError,
    StylePackFiles,
    drive_sentence,
    first_file,
    join_words,
    local_style_folder,
    models_dir,
    models_home,
    placement,
    require_optional,
    shared_file,
    verify_style_pack,
)

log = logging.getLogger(__name__)

HUB_REPO = "CVPR/DualStyleGAN"
#: The revision downloads are pinned to. The resolved commit of every download is recorded in
#: :attr:`StylePackFiles.commit`; pass ``revision=<that sha>`` to reproduce a run exactly.
HUB_REVISION = "main"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(/[\w.-]+)*$")
#: Seconds the one check that the Hub can be reached may take before downloads are given up for cached files.
REACH_TIMEOUT = 3.0
#: What to do about an unreachable Hub, in the CLI's words (the web app and Python users read it too).
OFFLINE_HINT = "pass --offline (or set HF_HUB_OFFLINE=1) to use only files already downloaded"
#: Called with one line ("downloading models/cartoon/generator.pt from CVPR/DualStyleGAN") before each file is
#: downloaded (huggingface_hub's own bar then shows its size and progress); the CLI prints it, None is silent.
announce: Callable[[str], None] | None = None
_reachable: dict[tuple[str, int], tuple[float, bool]] = {}


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_reachable(timeout: float = REACH_TIMEOUT) -> bool:
    """Whether the Hub's host accepts a connection within ``timeout`` seconds (one TCP connect, remembered for a
    minute); False at once under ``HF_HUB_OFFLINE``. huggingface_hub itself retries an unreachable Hub for ~30 s."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    url = urlparse(hub_endpoint())
    key = (url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443))
    now = time.monotonic()
    hit = _reachable.get(key)
    if hit is not None and now - hit[0] < 60:
        return hit[1]
    try:
        socket.create_connection(key, timeout=timeout).close()
        ok = True
    except OSError:
        ok = False
    _reachable[key] = (now, ok)
    return ok


def official_styles() -> dict[str, str]:
    """Every official style → where the authors publish its generator and codes ("hub" or "drive"), from the style
    registry (:func:`dualstylegan.styles.list_styles`), in its order."""
    return {s.name: s.published for s in styles.list_styles() if s.published in ("hub", "drive")}


# ----------------------------------------------------------------------------------------- Hub access
def _hf():
    import huggingface_hub  # lazy: keeps `import dualstylegan` fast; tests patch huggingface_hub.hf_hub_download

    return huggingface_hub


def _kind(exc: BaseException) -> str:
    """Classify a hf_hub_download failure across huggingface_hub versions (by class name, most specific first)."""
    names = {c.__name__ for c in type(exc).__mro__}
    if names & {"LocalEntryNotFoundError", "OfflineModeIsEnabled"} or isinstance(exc, (ConnectionError, TimeoutError)):
        return "offline"
    if names & {"EntryNotFoundError", "RemoteEntryNotFoundError"}:
        return "missing"
    if "RevisionNotFoundError" in names:
        return "revision"
    if names & {"RepositoryNotFoundError", "GatedRepoError"}:
        return "repo"
    return "error"


def _commit_of(path: Path) -> str | None:
    parts = path.parts
    idx = [i for i, p in enumerate(parts) if p == "snapshots"]
    return parts[idx[-1] + 1] if idx and idx[-1] + 1 < len(parts) else None


def _tree_url(repo_id: str, revision: str, folder: str = "models") -> str:
    return f"https://huggingface.co/{repo_id}/tree/{revision}" + (f"/{folder}" if folder else "")


class Hub:
    """hf_hub_download for one resolution: remembers failures and goes cache-only once the network is gone."""

    def __init__(self, repo_id: str, revision: str, cache_dir, local_files_only: bool, force_download: bool = False):
        self.repo_id, self.revision, self.cache_dir = repo_id, revision, cache_dir
        self.local_only = local_files_only
        self.asked_local_only = local_files_only
        self.force_download = force_download
        self.failures: dict[str, tuple[str, BaseException]] = {}   # repo file → (kind, exception)
        self.commit: str | None = None
        self.unreachable = False     # the reachability check failed: everything came from the cache

    def _check_reachable(self) -> None:
        """One quick check before the first download; an unreachable Hub turns this resolution cache-only."""
        if not self.local_only and not self.unreachable and not hub_reachable():
            self.local_only = self.unreachable = True

    def get(self, filename: str) -> Path | None:
        dead = next((f for f in self.failures.values() if f[0] in ("repo", "revision")), None)
        if dead is not None:                 # no such repo / revision: every other file fails the same way
            self.failures[filename] = dead
            return None
        cached = None if self.force_download else self.cached(filename)
        if cached is None:
            self._check_reachable()
        kwargs = {"revision": self.revision, "cache_dir": self.cache_dir, "local_files_only": self.local_only}
        if self.force_download and not self.local_only:
            kwargs["force_download"] = True
        if announce is not None and cached is None and not self.local_only:
            announce(f"downloading {filename} from {self.repo_id}")
        try:
            path = Path(_hf().hf_hub_download(self.repo_id, filename, **kwargs))
        except Exception as exc:  # noqa: BLE001 - every failure becomes a StylePackError that says what to do
            kind = _kind(exc)
            self.failures[filename] = (kind, exc)
            log.debug("hf_hub_download(%s, %s) failed (%s): %s", self.repo_id, filename, kind, exc)
            if kind == "offline":
                self.local_only = True       # no point waiting for the network for every other file
            return None
        self.failures.pop(filename, None)
        self.commit = self.commit or _commit_of(path)
        return path

    def cached(self, filename: str) -> Path | None:
        """The file if it is already in the Hub cache (no network)."""
        try:
            hit = _hf().try_to_load_from_cache(self.repo_id, filename, cache_dir=self.cache_dir,
                                               revision=self.revision)
        except Exception:  # noqa: BLE001 - a cache probe never fails the resolution
            return None
        return Path(hit) if isinstance(hit, str) and Path(hit).is_file() else None

    def reason(self, filenames) -> str:
        """Why ``filenames`` could not be had, in words (the most telling failure first)."""
        failures = [self.failures[f] for f in filenames if f in self.failures]
        kinds = {k for k, _ in failures}
        where = f"{self.repo_id}@{self.revision}"
        if "offline" in kinds:
            if self.asked_local_only:
                return f"downloads are off and they are not in the Hugging Face cache for {where}"
            return (f"the Hugging Face Hub ({hub_endpoint()}) could not be reached for {where} (offline?) and they "
                    f"are not in its cache; connect to the internet, or {OFFLINE_HINT}")
        if "repo" in kinds:
            return (f"there is no Hugging Face repo {self.repo_id!r} (or it is private or gated) and no such folder "
                    f"{self.repo_id} here")
        if "revision" in kinds:
            return f"{self.repo_id} has no revision {self.revision!r}"
        if "error" in kinds:
            return f"the download from {where} failed ({next(e for k, e in failures if k == 'error')})"
        return f"{where} does not have them"


# ----------------------------------------------------------------------------------------- resolution
def _unknown_style(name: str) -> StylePackError:
    return StylePackError(
        f"Unknown style {name!r}: the known styles are {', '.join(official_styles())}; you can also give a style "
        f"folder (with generator.pt) or a Hugging Face repo id such as {HUB_REPO}/cartoon.")


def _from_folder(folder: Path, name: str, source: str, hub: Hub) -> StylePackFiles:
    """A local style folder; the encoder may come from its parent, models_home()/models or the Hub cache/download."""
    codes = first_file(folder / REFINED_CODES, folder / CODES)
    encoder = shared_file(folder, ENCODER)
    if encoder is None and codes is not None:
        encoder = hub.get(f"models/{ENCODER}")   # the same file for every style
    missing = []
    if codes is None:
        missing.append((CODES_WANTED, folder))
    if encoder is None:
        missing.append((ENCODER, folder.parent))
    if missing:
        extra = f" ({ENCODER} is at {_tree_url(HUB_REPO, hub.revision)})" if encoder is None else ""
        raise StylePackError(f"The style pack {folder} is incomplete: put {placement(missing)}{extra}.")
    return StylePackFiles(
        name=name, generator=folder / GENERATOR, codes=codes, sampler=first_file(folder / SAMPLER), encoder=encoder,
        encoder_wplus=shared_file(folder, ENCODER_WPLUS), folder=folder,
        instyle_codes=first_file(folder / INSTYLE_CODES), source=source)


def _parent_prefix(prefix: str) -> str:
    """'models/cartoon/' → 'models/'; 'cartoon/' and '' → ''."""
    head = prefix.rstrip("/").rpartition("/")[0]
    return head + "/" if head else ""


def _from_hub(hub: Hub, prefix: str, name: str, home: Path | None) -> StylePackFiles:
    """Download ``{prefix}generator.pt``, the codes and the encoder (``{parent}encoder.pt``, else in the style folder).

    ``prefix`` is the style folder inside the repo ("models/cartoon/", or "" for a pack at the repo root). ``home``
    (the style's folder under models_home(), for official styles) supplies a local encoder and the Drive-only files;
    errors then say to put the files there. Without ``home``, errors say which repo files are missing.
    """
    parent = _parent_prefix(prefix)
    generator = hub.get(prefix + GENERATOR)
    codes = hub.get(prefix + REFINED_CODES)
    refined_kind = hub.failures.get(prefix + REFINED_CODES, ("",))[0]
    if codes is None and refined_kind in ("missing", "offline"):
        codes = hub.get(prefix + CODES)
        if codes is not None:
            hub.failures.pop(prefix + REFINED_CODES, None)
            if refined_kind == "offline":
                log.warning("%s: %s is not in the Hugging Face cache; using %s", name, REFINED_CODES, CODES)
    # The encoder is the same file for every style: a local copy spares a 1 GB download.
    encoder = shared_file(home, ENCODER) if home is not None else None
    encoder_files = list(dict.fromkeys([parent + ENCODER, prefix + ENCODER]))
    for cand in encoder_files if encoder is None else []:
        encoder = hub.get(cand)
        if encoder is not None:
            for c in encoder_files:
                hub.failures.pop(c, None)
            break

    if generator is None or codes is None or encoder is None:
        wanted = [(GENERATOR, generator), (REFINED_CODES, codes), (ENCODER, encoder)]
        names = join_words([f for f, got in wanted if got is None])
        reason = hub.reason(list(hub.failures))
        url = _tree_url(hub.repo_id, hub.revision, parent.rstrip("/"))
        if home is None:
            raise StylePackError(f"Could not {'find' if hub.asked_local_only else 'download'} {names} from "
                                 f"{hub.repo_id}/{prefix}: {reason} (see {url}).")
        missing = []
        if generator is None:
            missing.append((GENERATOR, home))
        if codes is None:
            missing.append((CODES_WANTED, home))
        if encoder is None:
            missing.append((ENCODER, home.parent))
        verb = "find" if hub.asked_local_only else "download"
        raise StylePackError(f"Could not {verb} {names} of style {name!r}: {reason}. "
                             f"Put {placement(missing)} — they are at {url}.")

    sampler = (first_file(home / SAMPLER) if home is not None else None) or hub.cached(prefix + SAMPLER)
    wplus = ((shared_file(home, ENCODER_WPLUS) if home is not None else None)
             or hub.cached(parent + ENCODER_WPLUS) or hub.cached(prefix + ENCODER_WPLUS))
    instyle = (first_file(home / INSTYLE_CODES) if home is not None else None) or hub.cached(prefix + INSTYLE_CODES)
    return StylePackFiles(name=name, generator=generator, codes=codes, sampler=sampler, encoder=encoder,
                          encoder_wplus=wplus, folder=generator.parent, instyle_codes=instyle, source="hub",
                          repo_id=hub.repo_id, revision=hub.revision, commit=_commit_of(generator) or hub.commit)


def resolve_style_pack(name_or_path: str | os.PathLike, *, revision: str = HUB_REVISION, cache_dir=None,
                       local_files_only: bool = False, need_sampler: bool = False, need_wplus: bool = False,
                       download: bool = True, force_download: bool = False) -> StylePackFiles:
    """A style name, a local folder or a Hub repo id → the paths of that style pack's files.

    Resolution order: (1) an existing style folder (``…/models/cartoon`` with ``generator.pt``; the encoder in it or
    in its parent); (2) ``models_home()/models/<name>``; (3) an official style published on the Hub, downloaded from
    ``CVPR/DualStyleGAN`` at ``revision`` (``refined_exstyle_code.npy`` preferred, ``exstyle_code.npy`` when the
    repo has no refined codes); (4) a Hub repo id ``owner/repo`` (a pack at the repo root), ``owner/repo/<style>``
    (the official ``models/<style>/`` layout) or ``owner/repo/<folder>/<style>``.

    ``download=False`` or ``local_files_only=True`` read Hub files only from the Hugging Face cache. A missing
    encoder.pt of a local pack is taken from the Hub too. ``need_sampler`` / ``need_wplus`` make ``sampler.pt`` /
    ``encoder_wplus.pt`` mandatory (they are on the authors' Google Drive only; put them in
    ``models_home()/models/<style>/`` and ``models_home()/models/``). The resolved Hub commit is in ``.commit``.
    Raises :class:`StylePackError` naming the exact missing files and where to put them.
    """
    arg = os.fspath(name_or_path).strip()
    if not arg:
        raise _unknown_style(arg)
    local_only = local_files_only or not download
    official = official_styles()

    def hub(repo_id: str = HUB_REPO) -> Hub:
        return Hub(repo_id, revision, cache_dir, local_only, force_download)

    # (1) a local folder
    folder = local_style_folder(arg, list(official))
    if folder is not None:
        files = _from_folder(folder, folder.name, "local", hub())
        require_optional(files, need_sampler, need_wplus, None, drive=False)
        return files

    style = arg.lower() if arg.lower() in official else arg
    home = models_dir() / style if "/" not in style else None
    # (2) a pack under models_home()
    if home is not None and (home / GENERATOR).is_file():
        files = _from_folder(home, style, "home", hub())
        require_optional(files, need_sampler, need_wplus, home, drive=style in official)
        return files

    # (3) an official style
    if official.get(style) == "drive":
        raise _drive_only(style, home, need_sampler, need_wplus)
    if official.get(style) == "hub":
        files = _from_hub(hub(), f"models/{style}/", style, home)
        require_optional(files, need_sampler, need_wplus, home, drive=True)
        return files

    if home is not None and home.is_dir():
        raise StylePackError(f"The style pack {home} is incomplete: put {GENERATOR} and {CODES_WANTED} in "
                             f"{home}{os.sep} and {ENCODER} in {home.parent}{os.sep}.")
    # (4) a Hub repo id
    if "/" in arg and _looks_local(arg):
        raise StylePackError(f"There is no such folder {arg}: give an existing style folder (with {GENERATOR}), a "
                             f"style name ({', '.join(official)}) or a Hugging Face repo id.")
    if "/" not in arg or not _HUB_ID.match(arg):
        raise _unknown_style(arg)
    owner, repo, *rest = arg.split("/")
    if f"{owner}/{repo}" == HUB_REPO and len(rest) == 1 and rest[0].lower() in official:
        return resolve_style_pack(rest[0].lower(), revision=revision, cache_dir=cache_dir,
                                  local_files_only=local_files_only, need_sampler=need_sampler,
                                  need_wplus=need_wplus, download=download, force_download=force_download)
    return _from_repo_id(hub(f"{owner}/{repo}"), rest, need_sampler, need_wplus)


def _looks_local(arg: str) -> bool:
    """A repo-id-shaped ``arg`` that is meant as a path: its first folder exists here, or it has a file extension
    or a trailing slash (``models/tiny`` when ``models/`` is here; a Hub repo id has no local folder)."""
    first = arg.split("/")[0]
    return Path(first).is_dir() or arg.endswith("/") or Path(arg).suffix in (".pt", ".npy")


def _drive_only(style: str, home: Path, need_sampler: bool, need_wplus: bool) -> StylePackError:
    """A Google-Drive-only style without a local pack: which files to download and where to put them."""
    missing = [(GENERATOR, home)]
    if first_file(home / REFINED_CODES, home / CODES) is None:
        missing.append((CODES, home))
    if shared_file(home, ENCODER) is None:
        missing.append((ENCODER, home.parent))
    if need_sampler and first_file(home / SAMPLER) is None:
        missing.append((SAMPLER, home))
    if need_wplus and shared_file(home, ENCODER_WPLUS) is None:
        missing.append((ENCODER_WPLUS, home.parent))
    return StylePackError(drive_sentence(f"Style {style!r} is", missing))


def _from_repo_id(h: Hub, rest: list[str], need_sampler: bool, need_wplus: bool) -> StylePackFiles:
    """A pack in any Hub repo: at its root (``rest`` empty), in ``models/<style>/`` or in ``<folder>/<style>/``."""
    prefix = "/".join((["models"] if len(rest) == 1 else []) + rest + [""]) if rest else ""
    files = _from_hub(h, prefix, rest[-1] if rest else h.repo_id.split("/")[1], None)
    parent = _parent_prefix(prefix)
    if need_sampler and files.sampler is None:
        files.sampler = h.get(prefix + SAMPLER)
    if need_wplus and files.encoder_wplus is None:
        files.encoder_wplus = h.get(parent + ENCODER_WPLUS) or (h.get(prefix + ENCODER_WPLUS) if prefix else None)
    lacking = [f for f, got in ((SAMPLER, files.sampler), (ENCODER_WPLUS, files.encoder_wplus))
               if got is None and (f == SAMPLER and need_sampler or f == ENCODER_WPLUS and need_wplus)]
    if lacking:
        raise StylePackError(f"Could not download {join_words(lacking)} from {h.repo_id}/{prefix}: "
                             f"{h.reason([prefix + SAMPLER, parent + ENCODER_WPLUS, prefix + ENCODER_WPLUS])}.")
    return files


def download_style(name: str, *, revision: str = HUB_REVISION, cache_dir=None, need_sampler: bool = False,
                   need_wplus: bool = False, force_download: bool = False, verify: bool = True) -> StylePackFiles:
    """Resolve ``name`` with downloads on (see :func:`resolve_style_pack`), then check that every file loads."""
    files = resolve_style_pack(name, revision=revision, cache_dir=cache_dir, need_sampler=need_sampler,
                               need_wplus=need_wplus, download=True, force_download=force_download)
    if verify:
        verify_style_pack(files)
    log.info("style %s ready (%s)", files.name, files.provenance)
    return files


# ----------------------------------------------------------------------------------------- listing
def list_styles(*, revision: str = HUB_REVISION, cache_dir=None) -> list[dict]:
    """Every known style and every local pack under models_home(), with which files are present (no network).

    Each entry: ``name``, ``published`` ("hub", "drive" or "local"), ``folder`` (where local files go),
    ``files`` (file name → path or None), ``present`` (names of the files present) and ``ready`` (generator,
    codes and encoder all present).
    """
    models = models_dir()
    official = official_styles()
    names = list(official)
    if models.is_dir():
        names += sorted(p.name for p in models.iterdir() if p.is_dir() and p.name not in official
                        and (p / GENERATOR).is_file())
    out = []
    for name in names:
        published = official.get(name, "local")
        home = models / name
        hub = Hub(HUB_REPO, revision, cache_dir, True) if published == "hub" else None
        prefix = f"models/{name}/"
        found: dict[str, Path | None] = {
            GENERATOR: first_file(home / GENERATOR) or (hub and hub.cached(prefix + GENERATOR)),
            REFINED_CODES: first_file(home / REFINED_CODES) or (hub and hub.cached(prefix + REFINED_CODES)),
            CODES: first_file(home / CODES) or (hub and hub.cached(prefix + CODES)),
            SAMPLER: first_file(home / SAMPLER),
            ENCODER: shared_file(home, ENCODER) or (hub and hub.cached(f"models/{ENCODER}")),
            ENCODER_WPLUS: shared_file(home, ENCODER_WPLUS),
            INSTYLE_CODES: first_file(home / INSTYLE_CODES),
        }
        found = {k: (v or None) for k, v in found.items()}
        out.append({
            "name": name,
            "published": published,
            "folder": str(home),
            "files": {k: (str(v) if v else None) for k, v in found.items()},
            "present": [k for k, v in found.items() if v],
            "ready": bool(found[GENERATOR] and (found[REFINED_CODES] or found[CODES]) and found[ENCODER]),
        })
    return out


__all__ = [
    "CODES", "ENCODER", "ENCODER_WPLUS", "GENERATOR", "HUB_REPO", "HUB_REVISION", "INSTYLE_CODES", "PACK_FILES",
    "PROJECT_URL", "REFINED_CODES", "SAMPLER", "Hub", "StylePackError", "StylePackFiles", "download_style",
    "list_styles", "models_home", "official_styles", "resolve_style_pack", "verify_style_pack",
]
