"""Style packs: a style name, a local folder or a Hugging Face repo id → the official files of one style.

A *style pack* is the authors' folder layout, used unchanged::

    models/encoder.pt                   pSp encoder into Z+ (shared by every style)
    models/encoder_wplus.pt             optional pSp encoder into W+ (authors' Google Drive only)
    models/<style>/generator.pt         DualStyleGAN generator (g_ema)
    models/<style>/refined_exstyle_code.npy and/or exstyle_code.npy   extrinsic style codes (Z+)
    models/<style>/sampler.pt           optional extrinsic style sampler (authors' Google Drive only)
    models/<style>/instyle_code.npy     optional intrinsic codes of the exemplars

The encoders may also sit inside the style folder. Seven styles are on the Hugging Face Hub (``CVPR/DualStyleGAN``);
the others, every ``sampler.pt`` and ``encoder_wplus.pt`` are only on the authors' Google Drive and are read from
``models_home()/models/`` (``$DUALSTYLEGAN_HOME``, default ``~/.cache/dualstylegan``). Downloads go through
``huggingface_hub.hf_hub_download``: cached, resumable, pinned to a revision whose commit is recorded.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import DualStyleGANError

log = logging.getLogger(__name__)

HUB_REPO = "CVPR/DualStyleGAN"
#: The revision downloads are pinned to. The resolved commit of every download is recorded in
#: :attr:`StylePackFiles.commit`; pass ``revision=<that sha>`` to reproduce a run exactly.
HUB_REVISION = "main"
PROJECT_URL = "https://github.com/williamyang1991/DualStyleGAN"

#: Every official style → where the authors publish its generator and codes ("hub" or "drive").
KNOWN_STYLES: dict[str, str] = {
    "cartoon": "hub",
    "caricature": "hub",
    "anime": "hub",
    "arcane": "hub",
    "comic": "hub",
    "pixar": "hub",
    "slamdunk": "hub",
    "fantasy": "drive",
    "illustration": "drive",
    "impasto": "drive",
}

GENERATOR = "generator.pt"
REFINED_CODES = "refined_exstyle_code.npy"
CODES = "exstyle_code.npy"
SAMPLER = "sampler.pt"
ENCODER = "encoder.pt"
ENCODER_WPLUS = "encoder_wplus.pt"
INSTYLE_CODES = "instyle_code.npy"
PACK_FILES = (GENERATOR, REFINED_CODES, CODES, SAMPLER, ENCODER, ENCODER_WPLUS, INSTYLE_CODES)
_CODES_WANTED = f"{REFINED_CODES} (or {CODES})"

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(/[\w.-]+)*$")


class StylePackError(DualStyleGANError, RuntimeError):
    """A style pack that cannot be found, downloaded or read; the message says what to put where."""


@dataclass
class StylePackFiles:
    """The files of one style pack (all local paths; Hub files are paths inside the Hugging Face cache)."""

    name: str
    generator: Path
    codes: Path                      # refined_exstyle_code.npy when present, else exstyle_code.npy
    sampler: Path | None
    encoder: Path
    encoder_wplus: Path | None
    folder: Path                     # the style folder (a Hub snapshot folder for downloads)
    instyle_codes: Path | None = None
    source: str = "local"            # "local" (a folder given), "home" (models_home()) or "hub"
    repo_id: str | None = None       # the Hub repo the generator came from
    revision: str | None = None      # the revision asked for
    commit: str | None = None        # the commit that revision resolved to (from the cache's snapshots/<commit>/)

    @property
    def refined(self) -> bool:
        """Whether the codes are the refined extrinsic codes (the paper's Sec. 3.3 refinement)."""
        return self.codes.name == REFINED_CODES

    @property
    def provenance(self) -> str:
        """Where the pack came from, for logs and reports: ``repo@commit`` or the folder."""
        if self.repo_id:
            return f"{self.repo_id}@{self.commit or self.revision}"
        return str(self.folder)


def models_home() -> Path:
    """``$DUALSTYLEGAN_HOME`` or ``~/.cache/dualstylegan``; style packs go in ``<home>/models/<style>/``."""
    env = os.environ.get("DUALSTYLEGAN_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dualstylegan"


def _models_dir() -> Path:
    return models_home() / "models"


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

    def get(self, filename: str) -> Path | None:
        dead = next((f for f in self.failures.values() if f[0] in ("repo", "revision")), None)
        if dead is not None:                 # no such repo / revision: every other file fails the same way
            self.failures[filename] = dead
            return None
        kwargs = dict(revision=self.revision, cache_dir=self.cache_dir, local_files_only=self.local_only)
        if self.force_download and not self.local_only:
            kwargs["force_download"] = True
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
            return f"the Hugging Face Hub could not be reached for {where} (offline?)"
        if "repo" in kinds:
            return f"there is no Hugging Face repo {self.repo_id!r} (or it is private or gated)"
        if "revision" in kinds:
            return f"{self.repo_id} has no revision {self.revision!r}"
        if "error" in kinds:
            return f"the download from {where} failed ({next(e for k, e in failures if k == 'error')})"
        return f"{where} does not have them"


# ----------------------------------------------------------------------------------------- messages
def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _placement(missing: list[tuple[str, Path]]) -> str:
    """[(file, folder)] → 'generator.pt and exstyle_code.npy in /x/models/cartoon/ and encoder.pt in /x/models/'."""
    by_folder: dict[Path, list[str]] = {}
    for name, folder in missing:
        by_folder.setdefault(folder, [])
        if name not in by_folder[folder]:
            by_folder[folder].append(name)
    return _join([f"{_join(names)} in {str(folder).rstrip(os.sep) + os.sep}" for folder, names in by_folder.items()])


def _drive_sentence(what: str, missing: list[tuple[str, Path]]) -> str:
    return (f"{what} only on the authors' Google Drive (links at {PROJECT_URL}): "
            f"download and put {_placement(missing)}.")


def _unknown_style(name: str) -> StylePackError:
    return StylePackError(
        f"Unknown style {name!r}: the known styles are {', '.join(KNOWN_STYLES)}; you can also give a style "
        f"folder (with generator.pt) or a Hugging Face repo id such as {HUB_REPO}/cartoon.")


# ----------------------------------------------------------------------------------------- resolution
def _first(*paths: Path) -> Path | None:
    return next((p for p in paths if p.is_file()), None)


def _looks_like_path(arg: str) -> bool:
    return os.path.isabs(arg) or arg.startswith((".", "~")) or (os.sep != "/" and os.sep in arg)


def _local_folder(arg: str) -> Path | None:
    """Step 1: an existing style folder (or its generator.pt). None when ``arg`` is not a local path."""
    p = Path(arg).expanduser()
    if p.is_file() and p.name == GENERATOR:
        return p.parent
    if p.is_dir():
        if (p / GENERATOR).is_file():
            return p
        if _looks_like_path(arg) or any((p / f).exists() for f in PACK_FILES):
            styles = sorted(c.name for c in p.iterdir() if (c / GENERATOR).is_file())
            hint = (f" It looks like a models folder: give one of its styles, e.g. {p / styles[0]}." if styles else
                    f" Put {GENERATOR} and {_CODES_WANTED} there, and {ENCODER} there or in {p.parent}{os.sep}.")
            raise StylePackError(f"The folder {p} is not a style pack: it has no {GENERATOR}.{hint}")
        return None
    if _looks_like_path(arg):
        raise StylePackError(f"There is no folder {p}: give an existing style folder (with {GENERATOR}), a style "
                             f"name ({', '.join(KNOWN_STYLES)}) or a Hugging Face repo id.")
    return None


def _shared(folder: Path, filename: str) -> Path | None:
    """An encoder file next to the style (style folder, its parent, then models_home()/models)."""
    return _first(folder / filename, folder.parent / filename, _models_dir() / filename)


def _optional(files: StylePackFiles, need_sampler: bool, need_wplus: bool, home: Path | None,
              drive: bool) -> None:
    """Raise when a required sampler.pt / encoder_wplus.pt is absent, saying where it comes from and goes."""
    style_dir = home or files.folder
    missing = []
    if need_sampler and files.sampler is None:
        missing.append((SAMPLER, style_dir))
    if need_wplus and files.encoder_wplus is None:
        missing.append((ENCODER_WPLUS, style_dir.parent))
    if not missing:
        return
    names = _join([m[0] for m in missing])
    if drive:
        raise StylePackError(_drive_sentence(f"Style {files.name!r} needs {names}, which is", missing))
    raise StylePackError(f"Style {files.name!r} needs {names}, which is missing: put {_placement(missing)}.")


def _from_folder(folder: Path, name: str, source: str, hub: Hub) -> StylePackFiles:
    """A local style folder; the encoder may come from its parent, models_home()/models or the Hub cache/download."""
    codes = _first(folder / REFINED_CODES, folder / CODES)
    encoder = _shared(folder, ENCODER)
    if encoder is None and codes is not None:
        encoder = hub.get(f"models/{ENCODER}")   # the same file for every style
    missing = []
    if codes is None:
        missing.append((_CODES_WANTED, folder))
    if encoder is None:
        missing.append((ENCODER, folder.parent))
    if missing:
        extra = f" ({ENCODER} is at {_tree_url(HUB_REPO, hub.revision)})" if encoder is None else ""
        raise StylePackError(f"The style pack {folder} is incomplete: put {_placement(missing)}{extra}.")
    return StylePackFiles(
        name=name, generator=folder / GENERATOR, codes=codes, sampler=_first(folder / SAMPLER), encoder=encoder,
        encoder_wplus=_shared(folder, ENCODER_WPLUS), folder=folder, instyle_codes=_first(folder / INSTYLE_CODES),
        source=source)


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
    encoder = _shared(home, ENCODER) if home is not None else None
    encoder_files = list(dict.fromkeys([parent + ENCODER, prefix + ENCODER]))
    for cand in encoder_files if encoder is None else []:
        encoder = hub.get(cand)
        if encoder is not None:
            for c in encoder_files:
                hub.failures.pop(c, None)
            break

    if generator is None or codes is None or encoder is None:
        wanted = [(GENERATOR, generator), (REFINED_CODES, codes), (ENCODER, encoder)]
        names = _join([f for f, got in wanted if got is None])
        reason = hub.reason(list(hub.failures))
        url = _tree_url(hub.repo_id, hub.revision, parent.rstrip("/"))
        if home is None:
            raise StylePackError(f"Could not {'find' if hub.asked_local_only else 'download'} {names} from "
                                 f"{hub.repo_id}/{prefix}: {reason} (see {url}).")
        missing = []
        if generator is None:
            missing.append((GENERATOR, home))
        if codes is None:
            missing.append((_CODES_WANTED, home))
        if encoder is None:
            missing.append((ENCODER, home.parent))
        verb = "find" if hub.asked_local_only else "download"
        raise StylePackError(f"Could not {verb} {names} of style {name!r}: {reason}. "
                             f"Put {_placement(missing)} — they are at {url}.")

    sampler = (_first(home / SAMPLER) if home is not None else None) or hub.cached(prefix + SAMPLER)
    wplus = ((_shared(home, ENCODER_WPLUS) if home is not None else None)
             or hub.cached(parent + ENCODER_WPLUS) or hub.cached(prefix + ENCODER_WPLUS))
    instyle = (_first(home / INSTYLE_CODES) if home is not None else None) or hub.cached(prefix + INSTYLE_CODES)
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

    def hub(repo_id: str = HUB_REPO) -> Hub:
        return Hub(repo_id, revision, cache_dir, local_only, force_download)

    # (1) a local folder
    folder = _local_folder(arg)
    if folder is not None:
        files = _from_folder(folder, folder.name, "local", hub())
        _optional(files, need_sampler, need_wplus, None, drive=False)
        return files

    style = arg.lower() if arg.lower() in KNOWN_STYLES else arg
    home = _models_dir() / style if "/" not in style else None
    # (2) a pack under models_home()
    if home is not None and (home / GENERATOR).is_file():
        files = _from_folder(home, style, "home", hub())
        _optional(files, need_sampler, need_wplus, home, drive=style in KNOWN_STYLES)
        return files

    # (3) an official style
    if style in KNOWN_STYLES:
        if KNOWN_STYLES[style] == "drive":
            missing = [(GENERATOR, home)]
            if _first(home / REFINED_CODES, home / CODES) is None:
                missing.append((CODES, home))
            if _shared(home, ENCODER) is None:
                missing.append((ENCODER, home.parent))
            if need_sampler and _first(home / SAMPLER) is None:
                missing.append((SAMPLER, home))
            if need_wplus and _shared(home, ENCODER_WPLUS) is None:
                missing.append((ENCODER_WPLUS, home.parent))
            raise StylePackError(_drive_sentence(f"Style {style!r} is", missing))
        files = _from_hub(hub(), f"models/{style}/", style, home)
        _optional(files, need_sampler, need_wplus, home, drive=True)
        return files

    if home is not None and home.is_dir():
        raise StylePackError(f"The style pack {home} is incomplete: put {GENERATOR} and {_CODES_WANTED} in "
                             f"{home}{os.sep} and {ENCODER} in {home.parent}{os.sep}.")
    # (4) a Hub repo id
    if "/" not in arg or not _HUB_ID.match(arg):
        raise _unknown_style(arg)
    owner, repo, *rest = arg.split("/")
    repo_id = f"{owner}/{repo}"
    if repo_id == HUB_REPO and len(rest) == 1 and rest[0].lower() in KNOWN_STYLES:
        return resolve_style_pack(rest[0].lower(), revision=revision, cache_dir=cache_dir,
                                  local_files_only=local_files_only, need_sampler=need_sampler,
                                  need_wplus=need_wplus, download=download, force_download=force_download)
    prefix = "/".join((["models"] if len(rest) == 1 else []) + rest + [""]) if rest else ""
    h = hub(repo_id)
    files = _from_hub(h, prefix, rest[-1] if rest else repo, None)
    parent = _parent_prefix(prefix)
    if need_sampler and files.sampler is None:
        files.sampler = h.get(prefix + SAMPLER)
    if need_wplus and files.encoder_wplus is None:
        files.encoder_wplus = h.get(parent + ENCODER_WPLUS) or (h.get(prefix + ENCODER_WPLUS) if prefix else None)
    lacking = [f for f, got in ((SAMPLER, files.sampler), (ENCODER_WPLUS, files.encoder_wplus))
               if got is None and (f == SAMPLER and need_sampler or f == ENCODER_WPLUS and need_wplus)]
    if lacking:
        raise StylePackError(f"Could not download {_join(lacking)} from {repo_id}/{prefix}: "
                             f"{h.reason([prefix + SAMPLER, parent + ENCODER_WPLUS, prefix + ENCODER_WPLUS])}.")
    return files


# ----------------------------------------------------------------------------------------- verification
def verify_style_pack(files: StylePackFiles) -> None:
    """Read every file of the pack once (no code executed); a damaged file → StylePackError naming it."""
    from .checkpoints import load_code_bank, load_torch_file

    checks = [(files.generator, load_torch_file), (files.codes, load_code_bank), (files.encoder, load_torch_file),
              (files.sampler, load_torch_file), (files.encoder_wplus, load_torch_file),
              (files.instyle_codes, load_code_bank)]
    for path, load in checks:
        if path is None:
            continue
        try:
            load(path)
        except Exception as exc:  # noqa: BLE001 - CheckpointError, but also truncated zips, EOF, pickle errors
            path = Path(path)
            real = path.resolve()
            where = f"{path} (the Hugging Face cache file {real})" if real != path.absolute() else str(path)
            again = (f"download it again (dualstylegan download {files.name})" if files.source == "hub"
                     else "put a fresh copy there")
            why = str(exc).strip().rstrip(".") or type(exc).__name__
            raise StylePackError(f"{path.name} of style {files.name!r} cannot be read ({why}): delete {where} and "
                                 f"{again}.") from exc


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
    models = _models_dir()
    names = list(KNOWN_STYLES)
    if models.is_dir():
        names += sorted(p.name for p in models.iterdir() if p.is_dir() and p.name not in KNOWN_STYLES
                        and (p / GENERATOR).is_file())
    out = []
    for name in names:
        published = KNOWN_STYLES.get(name, "local")
        home = models / name
        hub = Hub(HUB_REPO, revision, cache_dir, True) if published == "hub" else None
        prefix = f"models/{name}/"
        found: dict[str, Path | None] = {
            GENERATOR: _first(home / GENERATOR) or (hub and hub.cached(prefix + GENERATOR)),
            REFINED_CODES: _first(home / REFINED_CODES) or (hub and hub.cached(prefix + REFINED_CODES)),
            CODES: _first(home / CODES) or (hub and hub.cached(prefix + CODES)),
            SAMPLER: _first(home / SAMPLER),
            ENCODER: _shared(home, ENCODER) or (hub and hub.cached(f"models/{ENCODER}")),
            ENCODER_WPLUS: _shared(home, ENCODER_WPLUS),
            INSTYLE_CODES: _first(home / INSTYLE_CODES),
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
