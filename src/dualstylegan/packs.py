"""What a style pack is: the authors' file layout, where local packs live, and the sentences that say what is missing.

A *style pack* is the authors' folder layout, used unchanged::

    models/encoder.pt                   pSp encoder into Z+ (shared by every style)
    models/encoder_wplus.pt             optional pSp encoder into W+ (authors' Google Drive only)
    models/<style>/generator.pt         DualStyleGAN generator (g_ema)
    models/<style>/refined_exstyle_code.npy and/or exstyle_code.npy   extrinsic style codes (Z+)
    models/<style>/sampler.pt           optional extrinsic style sampler (authors' Google Drive only)
    models/<style>/instyle_code.npy     optional intrinsic codes of the exemplars

The encoders may also sit inside the style folder. Local packs live in ``models_home()/models/``
(``$DUALSTYLEGAN_HOME``, default ``~/.cache/dualstylegan``). Finding a pack by name and downloading it from the
Hugging Face Hub is :mod:`dualstylegan.hub`; where each official style is published is :mod:`dualstylegan.styles`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import DualStyleGANError, missing

PROJECT_URL = "https://github.com/williamyang1991/DualStyleGAN"

GENERATOR = "generator.pt"
REFINED_CODES = "refined_exstyle_code.npy"
CODES = "exstyle_code.npy"
SAMPLER = "sampler.pt"
ENCODER = "encoder.pt"
ENCODER_WPLUS = "encoder_wplus.pt"
INSTYLE_CODES = "instyle_code.npy"
PACK_FILES = (GENERATOR, REFINED_CODES, CODES, SAMPLER, ENCODER, ENCODER_WPLUS, INSTYLE_CODES)
#: How messages name the codes a pack needs.
CODES_WANTED = f"{REFINED_CODES} (or {CODES})"


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
        """Whether the codes are the refined extrinsic codes (the paper's §3.4 refinement)."""
        return self.codes.name == REFINED_CODES

    @property
    def provenance(self) -> str:
        """Where the pack came from, for logs and reports: ``repo@commit`` or the folder."""
        if self.repo_id:
            return f"{self.repo_id}@{self.commit or self.revision}"
        return str(self.folder)


def models_home() -> Path:
    """``$DUALSTYLEGAN_HOME`` or ``~/.cache/dualstylegan``; style packs go in ``<home>/models/<style>/``.

    A ``$DUALSTYLEGAN_HOME`` that names a file (or a symbolic link loop) is a :class:`StylePackError` saying so;
    a folder that does not exist yet is fine (downloads create it)."""
    env = os.environ.get("DUALSTYLEGAN_HOME")
    if not env:
        return Path.home() / ".cache" / "dualstylegan"
    home = Path(env).expanduser()
    for p in (home, *home.parents):
        if p.is_dir():
            break
        if p.is_file():
            what = f"the file {home}, not a folder" if p == home else f"{home}, which lies under the file {p}"
            raise StylePackError(f"DUALSTYLEGAN_HOME is set to {what}; point it at a folder (it is created when "
                                 "needed) or unset it to use ~/.cache/dualstylegan.")
        if os.path.islink(p) and not p.exists():
            raise StylePackError(f"DUALSTYLEGAN_HOME is set to {home}, but {p} {missing(p)}; point it at a folder "
                                 "or unset it.")
    return home


def models_dir() -> Path:
    """``models_home()/models``: the local style folders and the shared encoders."""
    return models_home() / "models"


# ----------------------------------------------------------------------------------------- local files
def first_file(*paths: Path) -> Path | None:
    """The first of ``paths`` that is an existing file."""
    return next((p for p in paths if p.is_file()), None)


def shared_file(folder: Path, filename: str) -> Path | None:
    """An encoder file next to the style: in the style folder, its parent, then ``models_dir()``."""
    return first_file(folder / filename, folder.parent / filename, models_dir() / filename)


def _looks_like_path(arg: str) -> bool:
    return os.path.isabs(arg) or arg.startswith((".", "~")) or (os.sep != "/" and os.sep in arg)


def local_style_folder(arg: str, known: list[str]) -> Path | None:
    """An existing style folder (or its generator.pt) named by ``arg``; None when ``arg`` is not a local path.

    Raises :class:`StylePackError` for a folder that is not a pack or a path that does not exist (``known``: the
    official style names, for the message).
    """
    p = Path(arg).expanduser()
    if p.is_file() and p.name == GENERATOR:
        return p.parent
    if p.is_dir():
        if (p / GENERATOR).is_file():
            return p
        if _looks_like_path(arg) or any((p / f).exists() for f in PACK_FILES):
            styles = sorted(c.name for c in p.iterdir() if (c / GENERATOR).is_file())
            hint = (f" It looks like a models folder: give one of its styles, e.g. {p / styles[0]}." if styles else
                    f" Put {GENERATOR} and {CODES_WANTED} there, and {ENCODER} there or in {p.parent}{os.sep}.")
            raise StylePackError(f"The folder {p} is not a style pack: it has no {GENERATOR}.{hint}")
        return None
    if _looks_like_path(arg):
        raise StylePackError(f"There is no folder {p}: give an existing style folder (with {GENERATOR}), a style "
                             f"name ({', '.join(known)}) or a Hugging Face repo id.")
    return None


# ----------------------------------------------------------------------------------------- messages
def join_words(items: list[str]) -> str:
    """['a', 'b', 'c'] → 'a, b and c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def placement(missing: list[tuple[str, Path]]) -> str:
    """[(file, folder)] → 'generator.pt and exstyle_code.npy in /x/models/cartoon/ and encoder.pt in /x/models/'."""
    by_folder: dict[Path, list[str]] = {}
    for name, folder in missing:
        by_folder.setdefault(folder, [])
        if name not in by_folder[folder]:
            by_folder[folder].append(name)
    return join_words([f"{join_words(names)} in {str(folder).rstrip(os.sep) + os.sep}"
                       for folder, names in by_folder.items()])


def drive_sentence(what: str, missing: list[tuple[str, Path]]) -> str:
    """'<what> only on the authors' Google Drive (links at …): download and put <files> in <folders>.'"""
    return (f"{what} only on the authors' Google Drive (links at {PROJECT_URL}): "
            f"download and put {placement(missing)}.")


def require_optional(files: StylePackFiles, need_sampler: bool, need_wplus: bool, home: Path | None,
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
    names = join_words([m[0] for m in missing])
    if drive:
        raise StylePackError(drive_sentence(f"Style {files.name!r} needs {names}, which is", missing))
    raise StylePackError(f"Style {files.name!r} needs {names}, which is missing: put {placement(missing)}.")


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


__all__ = [
    "CODES", "CODES_WANTED", "ENCODER", "ENCODER_WPLUS", "GENERATOR", "INSTYLE_CODES", "PACK_FILES", "PROJECT_URL",
    "REFINED_CODES", "SAMPLER", "StylePackError", "StylePackFiles", "drive_sentence", "first_file", "join_words",
    "local_style_folder", "models_dir", "models_home", "placement", "require_optional", "shared_file",
    "verify_style_pack",
]
