"""The Lambda container image without a Docker engine: emulate Dockerfile.lambda and run it.

No Docker engine runs here or in CI, yet the image has to be proven before it reaches AWS. This
module builds the image's filesystem the way BuildKit would, from the Dockerfile's own instructions,
so the emulation cannot drift from the real build:

- the build context is the repository filtered by ``.dockerignore`` (Docker's matching rules);
- ``COPY`` (from the context and ``--from`` another stage), ``ENV``, ``ARG``, ``WORKDIR``, ``USER``
  and ``CMD`` are applied as written;
- ``RUN`` steps run as written under ``/bin/sh``, with ``pip`` and ``python3`` shims that target the
  image: a CPython 3.12 interpreter and manylinux wheels for Amazon Linux 2023 (glibc 2.34);
- the base image's own pieces (``/var/task``; ``/var/runtime`` with the Runtime Interface Client)
  are laid out under an emulated root. The runtime set never carries ``awslambdaric``: the base
  image ships it, so the emulation installs it separately into ``var/runtime``, pinned to the
  version in ``requirements/dev.txt``.

Dependency layers (``RUN`` steps before a stage's first ``COPY``) are cached under ``.build/image/``
keyed by their inputs (instructions, mounted requirement files, interpreter, platform), the way
Docker's layer cache is, so reruns take seconds; a fresh machine installs once.

The image budgets (task root size, cold start) are measured by ``bench/image.py`` on this
emulation; ``make lambda-check`` runs the tests that prove it.
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import hashlib
import http.server
import json
import os
import platform
import queue
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra_cdk.environment import TASK_ROOT

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO_ROOT / "Dockerfile.lambda"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
EVENTS_DIR = REPO_ROOT / "lambda" / "events"
CACHE_DIR = REPO_ROOT / ".build" / "image"

# What the AWS Lambda Python base image provides that the build relies on (its ENV and layout).
IMAGE_TASK_ROOT = TASK_ROOT
IMAGE_RUNTIME_DIR = "/var/runtime"
BASE_IMAGE_ENV = {
    "LAMBDA_TASK_ROOT": IMAGE_TASK_ROOT,
    "LAMBDA_RUNTIME_DIR": IMAGE_RUNTIME_DIR,
    "LANG": "en_US.UTF-8",
}
# Amazon Linux 2023 (the base of the python3.12 image) ships glibc 2.34: no wheel may need more.
IMAGE_GLIBC_MINOR = 34
IMAGE_PYTHON_VERSION = (3, 12)
# The emulation runs what it builds, so it builds for this machine's architecture.
HOST_ARCHITECTURE = platform.machine()
# Bumped whenever the emulation itself changes how a cached layer is produced.
EMULATION_REVISION = "1"
LAYERS_KEPT = 3

RESULT_MARKER = "@@emulated-image@@ "
FUNCTION_NAME = "loan-default-emulated"
FUNCTION_ARN = f"arn:aws:lambda:eu-west-1:111122223333:function:{FUNCTION_NAME}"
RUNTIME_API_PREFIX = "/2018-06-01/runtime"
EXTENSIONS_API_PREFIX = "/2020-01-01/extension"


class EmulationError(RuntimeError):
    """The Dockerfile asks for what the emulation cannot reproduce, or the emulated build failed."""


# -------------------------------------------------------------------------------------------------
# The interpreter that stands in for the image's /var/lang/bin/python3.12
# -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImagePython:
    """A CPython to run the emulated task root; ``note`` says how far it is from the image's."""

    executable: Path
    version: tuple[int, int]
    note: str

    @property
    def tag(self) -> str:
        """The wheel tag of this interpreter, e.g. ``cp312``."""
        return f"cp{self.version[0]}{self.version[1]}"


def _interpreter_version(executable: Path) -> tuple[int, int] | None:
    try:
        result = subprocess.run(
            [str(executable), "-S", "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    major, minor = result.stdout.split()
    return int(major), int(minor)


def find_image_python() -> ImagePython:
    """Prefer a CPython 3.12 (the image's version); fall back to this venv's base interpreter.

    ``IMAGE_PYTHON`` overrides the search. The fallback keeps the proof running on a machine without
    3.12, with a note: wheels are then chosen for that interpreter's version, not the image's.
    """
    candidates: list[Path] = []
    if override := os.environ.get("IMAGE_PYTHON"):
        candidates.append(Path(override))
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates.extend(sorted(pyenv_root.glob("versions/3.12.*/bin/python3.12"), reverse=True))
    if found := shutil.which("python3.12"):
        candidates.append(Path(found))
    for candidate in candidates:
        if _interpreter_version(candidate) == IMAGE_PYTHON_VERSION:
            return ImagePython(candidate, IMAGE_PYTHON_VERSION, f"CPython 3.12 at {candidate}")
    base = Path(getattr(sys, "_base_executable", sys.executable))
    version = _interpreter_version(base) or (sys.version_info.major, sys.version_info.minor)
    return ImagePython(
        base,
        version,
        f"no CPython 3.12 found: fell back to {version[0]}.{version[1]} at {base} "
        "(the image runs 3.12; wheels are chosen for the fallback's version)",
    )


def manylinux_platforms(architecture: str) -> list[str]:
    """Every manylinux tag a glibc-2.34 system accepts (pip does not expand ``manylinux_2_34``)."""
    tags = [f"manylinux_2_{minor}_{architecture}" for minor in range(IMAGE_GLIBC_MINOR, 16, -1)]
    return [*tags, f"manylinux2014_{architecture}"]


# -------------------------------------------------------------------------------------------------
# Dockerfile parsing
# -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction after line continuations are joined."""

    keyword: str
    flags: tuple[tuple[str, str], ...]
    arguments: str
    line: int

    def flag(self, name: str) -> str | None:
        """The value of ``--name=value`` (the last one), or None."""
        values = [value for key, value in self.flags if key == name]
        return values[-1] if values else None

    def flag_values(self, name: str) -> list[str]:
        """Every value of a repeatable flag such as ``--mount``."""
        return [value for key, value in self.flags if key == name]


@dataclass
class Stage:
    """One ``FROM`` block."""

    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)


@dataclass
class Dockerfile:
    """The parsed file: global ARG defaults (usable in FROM) and the stages in order."""

    global_args: dict[str, str | None]
    stages: list[Stage]

    @property
    def final_stage(self) -> Stage:
        return self.stages[-1]

    def stage_named(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise EmulationError(f"COPY --from={name}: no stage of that name")

    def base_image(self, build_args: Mapping[str, str] | None = None) -> str:
        """The final stage's FROM with global ARGs substituted (what would be pulled)."""
        values = {k: v for k, v in self.global_args.items() if v is not None}
        values.update(build_args or {})
        return expand(self.final_stage.base, values)

    def instructions(self, keyword: str) -> list[Instruction]:
        """Every instruction of one kind, across all stages, in file order."""
        return [i for stage in self.stages for i in stage.instructions if i.keyword == keyword]


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Join ``\\`` continuations and drop comment lines, as Docker's parser does."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        yield start, " ".join(part for part in pending if part)
        pending = []
    if pending:
        yield start, " ".join(part for part in pending if part)


def _split_flags(arguments: str) -> tuple[tuple[tuple[str, str], ...], str]:
    flags: list[tuple[str, str]] = []
    rest = arguments
    while match := re.match(r"--([a-z-]+)(?:=(\S*))?\s+", rest):
        flags.append((match.group(1), match.group(2) or ""))
        rest = rest[match.end() :]
    return tuple(flags), rest


def parse_dockerfile(path: Path = DOCKERFILE) -> Dockerfile:
    """Parse every instruction; the builder refuses the ones it cannot emulate."""
    global_args: dict[str, str | None] = {}
    stages: list[Stage] = []
    for line, logical in _logical_lines(path.read_text(encoding="utf-8")):
        keyword, _, arguments = logical.partition(" ")
        keyword = keyword.upper()
        arguments = arguments.strip()
        if keyword == "FROM":
            words = arguments.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
            continue
        if keyword == "ARG" and not stages:
            key, _, default = arguments.partition("=")
            global_args[key] = default if "=" in arguments else None
            continue
        if not stages:
            raise EmulationError(f"line {line}: {keyword} before the first FROM")
        flags, rest = _split_flags(arguments + " ")
        stages[-1].instructions.append(Instruction(keyword, flags, rest.strip(), line))
    if not stages:
        raise EmulationError(f"{path}: no FROM instruction")
    return Dockerfile(global_args, stages)


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def expand(value: str, variables: Mapping[str, str]) -> str:
    """Substitute ``${NAME}``/``$NAME`` as Docker does for COPY/ENV/WORKDIR; unknown names fail."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in variables:
            raise EmulationError(f"${{{name}}} is not defined at this point of the Dockerfile")
        return variables[name]

    return _VARIABLE.sub(substitute, value)


def _key_values(arguments: str) -> dict[str, str]:
    """``ENV A=1 B="x y"`` (or the legacy ``ENV A 1``) as a dict, quotes removed."""
    words = shlex.split(arguments)
    if words and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}
    return dict(word.split("=", 1) for word in words)


def _copy_paths(arguments: str) -> tuple[list[str], str]:
    words = json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)
    if len(words) < 2:
        raise EmulationError(f"COPY needs a source and a destination: {arguments!r}")
    return list(words[:-1]), words[-1]


# -------------------------------------------------------------------------------------------------
# .dockerignore and the build context
# -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IgnorePattern:
    text: str
    negated: bool
    regex: re.Pattern[str]

    def matches(self, relative: str) -> bool:
        """Docker's rule: a pattern matches a path, or any directory that contains it."""
        parts = relative.split("/")
        return any(self.regex.match("/".join(parts[:n])) for n in range(len(parts), 0, -1))


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Translate a .dockerignore pattern (Go filepath.Match plus ``**``) to an anchored regex."""
    out: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**/", index):
            out.append("(?:.*/)?")
            index += 3
            continue
        if pattern.startswith("**", index):
            out.append(".*")
            index += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.index("]", index)
            out.append("[" + pattern[index + 1 : end].replace("!", "^", 1) + "]")
            index = end
        elif char == "\\" and index + 1 < len(pattern):
            index += 1
            out.append(re.escape(pattern[index]))
        else:
            out.append(re.escape(char))
        index += 1
    return re.compile("^" + "".join(out) + "$")


class DockerIgnore:
    """The exclusion rules of a .dockerignore file: the last matching pattern decides."""

    def __init__(self, lines: Sequence[str]) -> None:
        self.patterns: list[IgnorePattern] = []
        for raw in lines:
            text = raw.strip()
            if not text or text.startswith("#"):
                continue
            negated = text.startswith("!")
            body = os.path.normpath(text.lstrip("!").strip().lstrip("/"))
            self.patterns.append(IgnorePattern(text, negated, _pattern_regex(body)))

    @classmethod
    def from_file(cls, path: Path = DOCKERIGNORE) -> DockerIgnore:
        lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
        return cls(lines)

    def excludes(self, relative: str) -> bool:
        """True when ``relative`` (a context path, ``/``-separated) stays out of the context."""
        excluded = False
        for pattern in self.patterns:
            if pattern.matches(relative):
                excluded = not pattern.negated
        return excluded

    def may_include_below(self, directory: str) -> bool:
        """Could an exception pattern bring back something inside an excluded directory?"""
        for pattern in self.patterns:
            if not pattern.negated:
                continue
            literal = re.split(
                r"[*?\[\\]", pattern.text.lstrip("!").strip().lstrip("/"), maxsplit=1
            )
            prefix = literal[0].rstrip("/")
            if len(literal) > 1 and "/" not in prefix:
                return True
            if (
                prefix.startswith(directory + "/")
                or directory.startswith(prefix + "/")
                or (prefix == directory)
            ):
                return True
        return False


def build_context(
    root: Path = REPO_ROOT,
    ignore: DockerIgnore | None = None,
    replace: Mapping[str, Path | None] | None = None,
) -> dict[str, Path]:
    """The files ``docker build <root>`` would send: context path -> file on disk.

    ``replace`` swaps a top-level folder for another one (or removes it, with None): tests build
    with a freshly trained artifact folder in place of ``artifacts/``, or with none at all.
    """
    ignore = ignore or DockerIgnore.from_file(root / ".dockerignore")
    replace = dict(replace or {})
    files: dict[str, Path] = {}

    def walk(directory: Path, prefix: str) -> None:
        for entry in sorted(directory.iterdir()):
            relative = f"{prefix}{entry.name}"
            if not prefix and entry.name in replace:
                continue
            if entry.is_dir() and not entry.is_symlink():
                if ignore.excludes(relative) and not ignore.may_include_below(relative):
                    continue
                walk(entry, relative + "/")
            elif entry.is_file() and not ignore.excludes(relative):
                files[relative] = entry

    walk(root, "")
    for name, substitute in replace.items():
        if substitute is not None and substitute.is_dir():
            walk_root = substitute
            for path in sorted(walk_root.rglob("*")):
                relative = f"{name}/{path.relative_to(walk_root).as_posix()}"
                if path.is_file() and not ignore.excludes(relative):
                    files[relative] = path
    return files


def context_bytes(context: Mapping[str, Path]) -> int:
    """The size of the build context (what `docker build` uploads and CDK stages into cdk.out)."""
    return sum(path.stat().st_size for path in context.values())


# -------------------------------------------------------------------------------------------------
# The emulated build
# -------------------------------------------------------------------------------------------------


def link_tree(source: Path, destination: Path) -> None:
    """Copy a tree by hard links where possible (same file system), else by copying."""

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(
        source, destination, symlinks=True, copy_function=link_or_copy, dirs_exist_ok=True
    )


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class StageState:
    """One stage's emulated filesystem (``rootfs``) and its build-time variables."""

    rootfs: Path
    env: dict[str, str]
    args: dict[str, str]
    workdir: Path
    user: str = "root"
    cmd: list[str] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)
    layer_inputs: list[str] = field(default_factory=list)
    copied: bool = False

    @property
    def layer_key(self) -> str:
        """Docker's layer-cache idea: the same inputs so far give the same filesystem."""
        return hashlib.sha256("\n".join(self.layer_inputs).encode()).hexdigest()[:24]

    def image_path(self, path: str) -> Path:
        """Where an image path lives under the emulated root; paths from variables already do."""
        if path.startswith(str(self.rootfs)):
            return Path(path)
        if path.startswith("/"):
            return self.rootfs / path.lstrip("/")
        return self.workdir / path


@dataclass(frozen=True)
class EmulatedImage:
    """The result: the final stage's root, its ENV/CMD/USER, and the interpreter that runs it."""

    rootfs: Path
    env: dict[str, str]
    cmd: list[str]
    user: str
    workdir: Path
    python: ImagePython
    build_log: str

    @property
    def task_root(self) -> Path:
        return self.rootfs / IMAGE_TASK_ROOT.lstrip("/")

    @property
    def runtime_dir(self) -> Path:
        return self.rootfs / IMAGE_RUNTIME_DIR.lstrip("/")


class EmulatedBuild:
    """Run Dockerfile.lambda's instructions against a build context, into ``workspace``."""

    SUPPORTED = frozenset({"ARG", "ENV", "WORKDIR", "COPY", "RUN", "USER", "CMD", "ENTRYPOINT"})
    SUPPORTED_FLAGS: Mapping[str, frozenset[str]] = {
        "COPY": frozenset({"from"}),
        "RUN": frozenset({"mount"}),
    }

    def __init__(
        self,
        workspace: Path,
        context: Mapping[str, Path],
        *,
        dockerfile: Path = DOCKERFILE,
        build_args: Mapping[str, str] | None = None,
        python: ImagePython | None = None,
        architecture: str = HOST_ARCHITECTURE,
        cache_dir: Path | None = CACHE_DIR,
    ) -> None:
        self.workspace = workspace
        self.context = dict(context)
        self.dockerfile = parse_dockerfile(dockerfile)
        self.build_args = dict(build_args or {})
        self.python = python or find_image_python()
        self.architecture = architecture
        self.cache_dir = cache_dir
        self.log: list[str] = []
        self._states: dict[str, StageState] = {}
        self._shims = self._write_shims(workspace / "shims")

    def _write_shims(self, directory: Path) -> Path:
        """``pip``/``python3`` as the image has them, resolving wheels for the image's platform."""
        directory.mkdir(parents=True, exist_ok=True)
        interpreter = shlex.quote(str(self.python.executable))
        platforms = " ".join(f"--platform {tag}" for tag in manylinux_platforms(self.architecture))
        scripts = {
            "python3": f'#!/bin/sh\nexec {interpreter} "$@"\n',
            "pip": (
                "#!/bin/sh\n"
                "export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1\n"
                'if [ "$1" = install ]; then\n'
                f'  shift; exec {interpreter} -m pip install {platforms} "$@"\n'
                "fi\n"
                f'exec {interpreter} -m pip "$@"\n'
            ),
        }
        for name, script in scripts.items():
            path = directory / name
            path.write_text(script, encoding="utf-8")
            path.chmod(0o755)
        return directory

    # -- stages -----------------------------------------------------------------------------------

    def run(self) -> EmulatedImage:
        for index, stage in enumerate(self.dockerfile.stages):
            state = self._new_stage(stage, index)
            for instruction in stage.instructions:
                self._apply(instruction, state)
            self._states[stage.name or str(index)] = state
        final = self._states[self.dockerfile.final_stage.name or str(len(self._states) - 1)]
        self._install_runtime_interface_client(final.rootfs)
        return EmulatedImage(
            rootfs=final.rootfs,
            env={k: v for k, v in final.env.items() if k not in BASE_IMAGE_ENV},
            cmd=final.cmd,
            user=final.user,
            workdir=final.workdir,
            python=self.python,
            build_log="\n".join(self.log),
        )

    def _new_stage(self, stage: Stage, index: int) -> StageState:
        if any(stage.base == earlier.name for earlier in self.dockerfile.stages[:index]):
            raise EmulationError(f"FROM {stage.base}: building on an earlier stage is not emulated")
        rootfs = self.workspace / f"stage-{index}-{stage.name or 'final'}"
        if rootfs.exists():
            shutil.rmtree(rootfs)
        for directory in (IMAGE_TASK_ROOT, IMAGE_RUNTIME_DIR, "/tmp"):
            (rootfs / directory.lstrip("/")).mkdir(parents=True)
        env = {
            key: str(rootfs / value.lstrip("/")) if value.startswith("/") else value
            for key, value in BASE_IMAGE_ENV.items()
        }
        state = StageState(rootfs=rootfs, env=env, args={}, workdir=rootfs / "var" / "task")
        global_args = {k: v for k, v in self.dockerfile.global_args.items() if v is not None}
        base = expand(stage.base, {**global_args, **self.build_args})
        state.layer_inputs.append(
            f"revision {EMULATION_REVISION}; FROM {base}; {self.python.tag}; {self.architecture}"
        )
        self.log.append(f"FROM {stage.base}{' AS ' + stage.name if stage.name else ''} -> {rootfs}")
        return state

    def _apply(self, instruction: Instruction, state: StageState) -> None:
        if instruction.keyword not in self.SUPPORTED:
            raise EmulationError(
                f"Dockerfile line {instruction.line}: the emulation does not know "
                f"{instruction.keyword}; teach tools/image_emulation.py before using it"
            )
        allowed = self.SUPPORTED_FLAGS.get(instruction.keyword, frozenset())
        if unknown := sorted({name for name, _ in instruction.flags} - allowed):
            raise EmulationError(
                f"Dockerfile line {instruction.line}: {instruction.keyword} --{unknown[0]} is not "
                "emulated; teach tools/image_emulation.py before using it"
            )
        state.layer_inputs.append(
            f"{instruction.keyword} {instruction.flags} {instruction.arguments}"
        )
        variables = {**state.env, **state.args}
        keyword = instruction.keyword
        if keyword == "ARG":
            name, _, default = instruction.arguments.partition("=")
            inherited = self.dockerfile.global_args.get(name)
            value = self.build_args.get(
                name, default if "=" in instruction.arguments else inherited
            )
            state.args[name] = value or ""
            state.layer_inputs.append(f"ARG {name}={state.args[name]}")
        elif keyword == "ENV":
            for key, value in _key_values(instruction.arguments).items():
                state.env[key] = expand(value, variables)
        elif keyword == "WORKDIR":
            state.workdir = state.image_path(expand(instruction.arguments, variables))
            state.workdir.mkdir(parents=True, exist_ok=True)
        elif keyword == "USER":
            state.user = expand(instruction.arguments, variables)
        elif keyword in {"CMD", "ENTRYPOINT"}:
            words = json.loads(instruction.arguments)
            if keyword == "CMD":
                state.cmd = words
            else:
                state.entrypoint = words
        elif keyword == "COPY":
            self._copy(instruction, state, variables)
        else:
            self._run(instruction, state, variables)

    # -- COPY -------------------------------------------------------------------------------------

    def _copy(self, instruction: Instruction, state: StageState, variables: dict[str, str]) -> None:
        sources, destination = _copy_paths(instruction.arguments)
        target = state.image_path(expand(destination, variables))
        into_directory = destination.endswith("/") or len(sources) > 1
        from_stage = instruction.flag("from")
        copied: list[tuple[Path, Path]] = []
        for written in sources:
            source = expand(written, variables)
            if from_stage is not None:
                copied += self._from_stage(from_stage, source, target, into_directory)
            else:
                copied += self._from_context(source, target, into_directory, instruction.line)
        for src, dst in copied:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        state.copied = True  # later RUN steps depend on copied files: the layer cache stops here
        self.log.append(f"COPY (line {instruction.line}): {len(copied)} files -> {target}")

    def _from_context(
        self, pattern: str, target: Path, into_directory: bool, line: int
    ) -> list[tuple[Path, Path]]:
        pattern = pattern.strip("/") if pattern not in {".", "./"} else ""
        wildcard = any(char in pattern for char in "*?[")
        roots = self._matching_context_paths(pattern) if wildcard else [pattern]
        pairs: list[tuple[Path, Path]] = []
        for root in roots:
            if root in self.context:  # a file
                destination = target / Path(root).name if into_directory else target
                pairs.append((self.context[root], destination))
                continue
            prefix = f"{root}/" if root else ""
            below = {k: v for k, v in self.context.items() if k.startswith(prefix)}
            pairs += [(path, target / key[len(prefix) :]) for key, path in below.items()]
        if not pairs and not wildcard:
            raise EmulationError(
                f"Dockerfile line {line}: COPY {pattern}: not found in the context"
            )
        return pairs

    def _matching_context_paths(self, pattern: str) -> list[str]:
        """Context files and folders a COPY wildcard names (BuildKit: no match copies nothing)."""
        depth = pattern.count("/") + 1
        candidates = {"/".join(key.split("/")[:depth]) for key in self.context}
        return sorted(c for c in candidates if fnmatch.fnmatchcase(c, pattern))

    def _from_stage(
        self, stage_name: str, source: str, target: Path, into_directory: bool
    ) -> list[tuple[Path, Path]]:
        self.dockerfile.stage_named(stage_name)  # fails clearly on an unknown name
        if stage_name not in self._states:
            raise EmulationError(f"COPY --from={stage_name}: that stage has not been built yet")
        origin = self._states[stage_name].image_path(source)
        if origin.is_file():
            return [(origin, target / origin.name if into_directory else target)]
        if not origin.is_dir():
            raise EmulationError(f"COPY --from={stage_name} {source}: not found in that stage")
        return [
            (path, target / path.relative_to(origin))
            for path in sorted(origin.rglob("*"))
            if path.is_file()
        ]

    # -- RUN --------------------------------------------------------------------------------------

    def _run(self, instruction: Instruction, state: StageState, variables: dict[str, str]) -> None:
        script = instruction.arguments
        if script.startswith("["):
            raise EmulationError(
                f"Dockerfile line {instruction.line}: exec-form RUN is not emulated"
            )
        mount_dir = self.workspace / f"mounts-{instruction.line}"
        for spec in instruction.flag_values("mount"):
            options = dict(part.split("=", 1) for part in spec.split(","))
            if options.get("type") != "bind" or "from" in options:
                raise EmulationError(
                    f"line {instruction.line}: only context bind mounts are emulated"
                )
            source, mount_target = options["source"].strip("/"), options["target"]
            host = mount_dir / source
            for key, path in self.context.items():
                if key.startswith(source + "/"):
                    (host / key[len(source) + 1 :]).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, host / key[len(source) + 1 :])
                    state.layer_inputs.append(f"mount {key} sha256:{_sha256_file(path)}")
            script = script.replace(mount_target, str(host))
        cacheable = not state.copied and self.cache_dir is not None
        layer = self.cache_dir / "layers" / state.layer_key if self.cache_dir else None
        if cacheable and layer is not None and layer.is_dir():
            shutil.rmtree(state.rootfs)
            link_tree(layer, state.rootfs)
            self.log.append(f"RUN (line {instruction.line}): cached layer {layer.name}")
            return
        self._execute(script, state, variables, instruction.line)
        if cacheable and layer is not None:
            self._store_layer(state.rootfs, layer)

    def _execute(
        self, script: str, state: StageState, variables: dict[str, str], line: int
    ) -> None:
        env = {
            "PATH": f"{self._shims}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(state.rootfs / "tmp"),
            "TMPDIR": str(state.rootfs / "tmp"),
            **variables,
        }
        started = time.perf_counter()
        result = subprocess.run(
            ["/bin/sh", "-c", script],
            cwd=state.workdir,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - started
        self.log.append(f"RUN (line {line}) took {seconds:.1f} s\n{result.stdout}{result.stderr}")
        if result.returncode != 0:
            raise EmulationError(
                f"Dockerfile line {line}: RUN exited {result.returncode}\n"
                f"{result.stdout[-4000:]}{result.stderr[-4000:]}"
            )

    def _store_layer(self, rootfs: Path, layer: Path) -> None:
        staging = layer.with_name(f"{layer.name}.tmp-{uuid.uuid4().hex[:8]}")
        link_tree(rootfs, staging)
        try:
            staging.rename(layer)
        except OSError:  # another process stored the same layer first
            shutil.rmtree(staging, ignore_errors=True)
        layers = sorted(
            (p for p in layer.parent.iterdir() if p.is_dir() and ".tmp-" not in p.name),
            key=lambda p: p.stat().st_mtime,
        )
        for stale in layers[:-LAYERS_KEPT]:
            shutil.rmtree(stale, ignore_errors=True)

    # -- what the base image adds -----------------------------------------------------------------

    def _install_runtime_interface_client(self, rootfs: Path) -> None:
        """Put ``awslambdaric`` (pinned as in requirements/dev.txt) where the base image has it."""
        pins = runtime_interface_client_pins()
        runtime_dir = rootfs / IMAGE_RUNTIME_DIR.lstrip("/")
        key = hashlib.sha256(
            f"{EMULATION_REVISION}|{pins}|{self.python.version}|{self.architecture}".encode()
        ).hexdigest()[:24]
        cached = self.cache_dir / "runtime-interface-client" / key if self.cache_dir else None
        if cached is not None and cached.is_dir():
            link_tree(cached, runtime_dir)
            return
        command = [str(self._shims / "pip"), "install", "--no-deps", "--only-binary=:all:"]
        command += ["--target", str(runtime_dir), *pins]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise EmulationError(f"installing {pins} failed:\n{result.stdout}{result.stderr}")
        subprocess.run(
            [str(self.python.executable), "-m", "compileall", "-q", str(runtime_dir)], check=True
        )
        if cached is not None:
            self._store_layer(runtime_dir, cached)


def runtime_interface_client_pins(dev_requirements: Path | None = None) -> list[str]:
    """``awslambdaric`` and its two dependencies at the versions the dev set pins."""
    text = (dev_requirements or REPO_ROOT / "requirements" / "dev.txt").read_text(encoding="utf-8")
    pins = []
    for name in ("awslambdaric", "simplejson", "snapshot-restore-py"):
        match = re.search(rf"^{re.escape(name)}==(\S+)", text, flags=re.MULTILINE)
        if match is None:
            raise EmulationError(f"{name} is not pinned in requirements/dev.txt")
        pins.append(f"{name}=={match.group(1)}")
    return pins


def resolve_wheels(
    architecture: str,
    requirement_files: Sequence[Path],
    python: ImagePython | None = None,
) -> list[str]:
    """The wheel files pip would install for ``architecture``, resolved without installing anything.

    The emulation can only run the host's architecture; this proves the other one (Graviton,
    ``--platform linux/arm64``) has a binary wheel for every hash-pinned requirement.
    """
    python = python or find_image_python()
    with tempfile.TemporaryDirectory(prefix="resolve-") as tmp:
        report = Path(tmp) / "report.json"
        command = [str(python.executable), "-m", "pip", "install", "--dry-run", "--quiet"]
        command += ["--report", str(report), "--require-hashes", "--only-binary=:all:"]
        command += ["--target", str(Path(tmp) / "target")]
        for tag in manylinux_platforms(architecture):
            command += ["--platform", tag]
        for requirements in requirement_files:
            command += ["-r", str(requirements)]
        env = {**os.environ, "PIP_ROOT_USER_ACTION": "ignore", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
        if result.returncode != 0:
            raise EmulationError(f"pip could not resolve for {architecture}:\n{result.stderr}")
        installs = json.loads(report.read_text(encoding="utf-8"))["install"]
    return sorted(item["download_info"]["url"].rsplit("/", 1)[-1] for item in installs)


def build_image(
    workspace: Path,
    artifacts: Path | None,
    *,
    build_args: Mapping[str, str] | None = None,
    python: ImagePython | None = None,
    cache_dir: Path | None = CACHE_DIR,
) -> EmulatedImage:
    """Emulate ``docker build -f Dockerfile.lambda .`` with ``artifacts`` as the artifact folder."""
    context = build_context(REPO_ROOT, replace={"artifacts": artifacts})
    build = EmulatedBuild(
        workspace, context, build_args=build_args, python=python, cache_dir=cache_dir
    )
    return build.run()


# -------------------------------------------------------------------------------------------------
# Running the emulated image
# -------------------------------------------------------------------------------------------------


def lambda_environment(
    image: EmulatedImage, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The variables Lambda gives a function process, plus the image's ENV; nothing from this shell.

    ``PYTHONPATH`` puts the task root first and the runtime directory second, as the base image's
    bootstrap does; nothing of ``.venv`` is reachable.
    """
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": str(image.rootfs / "tmp"),
        "TMPDIR": str(image.rootfs / "tmp"),
        "TZ": "UTC",
        "LAMBDA_TASK_ROOT": str(image.task_root),
        "LAMBDA_RUNTIME_DIR": str(image.runtime_dir),
        "PYTHONPATH": f"{image.task_root}:{image.runtime_dir}",
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_LAMBDA_FUNCTION_NAME": FUNCTION_NAME,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{FUNCTION_NAME}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/11/28/[$LATEST]emulated",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        **image.env,
    }
    env.update(extra or {})
    return env


def isolated_python(image: EmulatedImage) -> list[str]:
    """The interpreter with no site-packages (``-S``), no user site (``-s``), no cwd on sys.path."""
    return [str(image.python.executable), "-S", "-s", "-P"]


# Source for a driver run by the emulated task root's interpreter (which needs ``import os`` first):
# the Lambda context object as the Python runtime passes it, with what Powertools reads.
EMULATED_CONTEXT_SOURCE = f"""
class Context:
    function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
    function_version = "$LATEST"
    invoked_function_arn = {FUNCTION_ARN!r}
    memory_limit_in_mb = 1024
    log_group_name = os.environ["AWS_LAMBDA_LOG_GROUP_NAME"]
    log_stream_name = os.environ["AWS_LAMBDA_LOG_STREAM_NAME"]
    def __init__(self, request_id):
        self.aws_request_id = request_id
    def get_remaining_time_in_millis(self):
        return 30000
"""

# Runs inside the emulated task root: import the handler, answer each event, report what loaded.
_HANDLER_DRIVER = (
    r"""
import json, os, sys, sysconfig
marker = sys.argv[2]
events = json.load(open(sys.argv[1], encoding="utf-8"))

"""
    + EMULATED_CONTEXT_SOURCE
    + r"""

from main import handler

for number, event in enumerate(events):
    response = handler(event, Context(f"emulated-{number}"))
    print(marker + json.dumps({"response": response}), flush=True)

allowed = [os.environ["LAMBDA_TASK_ROOT"], os.environ["LAMBDA_RUNTIME_DIR"]]
stdlib = [sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]]
foreign = []
for name, module in sorted(sys.modules.items()):
    path = getattr(module, "__file__", None)
    if not path:
        continue
    path = os.path.realpath(path)
    inside = any(path.startswith(os.path.realpath(root) + os.sep) for root in allowed)
    in_stdlib = any(path.startswith(root + os.sep) for root in stdlib) and "-packages" not in path
    if not (inside or in_stdlib):
        foreign.append(f"{name}: {path}")
print(marker + json.dumps({"modules": sorted(sys.modules), "foreign": foreign, "path": sys.path}),
      flush=True)
"""
)


@dataclass
class HandlerRun:
    """What one fresh process did with a list of events."""

    responses: list[dict[str, Any]]
    modules: list[str]
    foreign_modules: list[str]
    sys_path: list[str]
    first_response_seconds: float
    output: str


def invoke_handler_in_fresh_process(
    image: EmulatedImage,
    events: Sequence[Mapping[str, Any]],
    *,
    extra_env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
) -> HandlerRun:
    """Start the image's interpreter on the task root, import main.handler, answer ``events``.

    ``first_response_seconds`` runs from just before the process starts to the first response line.
    """
    events_file = image.rootfs / "tmp" / f"events-{uuid.uuid4().hex[:8]}.json"
    events_file.write_text(json.dumps(list(events)), encoding="utf-8")
    module, _, _function = image.cmd[0].rpartition(".")
    driver = _HANDLER_DRIVER.replace(
        "from main import handler", f"from {module} import {_function}"
    )
    argv = [*isolated_python(image), "-c", driver, str(events_file), RESULT_MARKER]
    started = time.perf_counter()
    process = subprocess.Popen(
        argv,
        cwd=image.task_root,
        env=lambda_environment(image, extra_env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    results: list[dict[str, Any]] = []
    lines: list[str] = []
    first = float("nan")
    deadline = threading.Timer(timeout, process.kill)
    deadline.start()
    if process.stdout is None:
        raise EmulationError("no stdout pipe from the emulated task root")
    try:
        for line in process.stdout:
            lines.append(line)
            if line.startswith(RESULT_MARKER):
                if not results:
                    first = time.perf_counter() - started
                results.append(json.loads(line[len(RESULT_MARKER) :]))
        process.wait()
    finally:
        deadline.cancel()
    output = "".join(lines)
    if process.returncode != 0 or not results:
        raise EmulationError(
            f"the emulated task root failed (exit {process.returncode}):\n{output}"
        )
    report = results[-1]
    return HandlerRun(
        responses=[r["response"] for r in results[:-1]],
        modules=report["modules"],
        foreign_modules=report["foreign"],
        sys_path=report["path"],
        first_response_seconds=first,
        output=output,
    )


def file_snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Path -> (size, mtime_ns) of every file: shows whether a run wrote into the task root."""
    return {
        str(path.relative_to(root)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in root.rglob("*")
        if path.is_file()
    }


# -------------------------------------------------------------------------------------------------
# The Lambda Runtime API, emulated: what the Runtime Interface Client talks to
# -------------------------------------------------------------------------------------------------


@dataclass
class InvocationOutcome:
    """How the function answered one invocation: a response, a function error, or an init error."""

    kind: str  # "response" | "error" | "init_error"
    body: Any
    error_type: str | None = None
    received_at: float = 0.0


class _QuietServer(http.server.ThreadingHTTPServer):
    """Stopping the client mid long-poll resets its connection: expected, so not printed."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _trace_id() -> str:
    root = f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}"
    return f"{root};Parent={uuid.uuid4().hex[:16]};Sampled=0"


class RuntimeApiEmulator:
    """The three Runtime API calls a function makes, over real HTTP on 127.0.0.1.

    ``GET  /2018-06-01/runtime/invocation/next`` long-polls for the next event;
    ``POST /2018-06-01/runtime/invocation/{id}/response`` and ``.../{id}/error`` answer it;
    ``POST /2018-06-01/runtime/init/error`` reports a failure before the first invocation.

    And the Extensions API's two calls an internal extension makes: ``POST
    /2020-01-01/extension/register`` (names recorded in ``extensions``) and ``GET
    /2020-01-01/extension/event/next``, which for an extension of no events blocks until the
    emulator stops (a sandbox that lives until it is reclaimed).
    """

    def __init__(self) -> None:
        self.extensions: list[str] = []
        self._extension_stop = threading.Event()
        self._events: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
        self._outcomes: dict[str, queue.Queue[InvocationOutcome]] = {}
        self.init_errors: list[InvocationOutcome] = []
        self.unexpected_requests: list[str] = []
        self._init_error_seen = threading.Event()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        """The value for AWS_LAMBDA_RUNTIME_API (host:port, no scheme)."""
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def __enter__(self) -> RuntimeApiEmulator:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._extension_stop.set()
        for _ in range(8):
            self._events.put(None)  # releases any long-polling /next
        self._server.shutdown()
        self._server.server_close()

    def invoke(self, event: Mapping[str, Any], timeout: float = 60.0) -> InvocationOutcome:
        """Queue ``event`` for the next /next call and wait for the function's answer."""
        request_id = str(uuid.uuid4())
        self._outcomes[request_id] = queue.Queue(maxsize=1)
        self._events.put((request_id, json.dumps(event).encode()))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                return self._outcomes[request_id].get(timeout=0.05)
            except queue.Empty:
                if self._init_error_seen.is_set():
                    return self.init_errors[-1]
        raise TimeoutError(f"no answer to invocation {request_id} within {timeout} s")

    def _record(self, request_id: str, outcome: InvocationOutcome) -> bool:
        waiting = self._outcomes.get(request_id)
        if waiting is None:
            return False
        waiting.put(outcome)
        return True

    def _handler_class(self) -> type[http.server.BaseHTTPRequestHandler]:
        emulator = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return  # the test output stays readable

            def _reply(
                self, status: int, body: bytes, headers: Mapping[str, str] | None = None
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == f"{EXTENSIONS_API_PREFIX}/event/next":
                    emulator._extension_stop.wait()
                    self._reply(200, b'{"eventType":"SHUTDOWN"}', {"Connection": "close"})
                    return
                if self.path != f"{RUNTIME_API_PREFIX}/invocation/next":
                    emulator.unexpected_requests.append(f"GET {self.path}")
                    self._reply(404, b'{"errorType":"NotFound"}')
                    return
                item = emulator._events.get()
                if item is None:
                    self._reply(500, b'{"errorType":"Shutdown"}', {"Connection": "close"})
                    return
                request_id, body = item
                deadline_ms = int((time.time() + 30) * 1000)
                self._reply(
                    200,
                    body,
                    {
                        "Lambda-Runtime-Aws-Request-Id": request_id,
                        "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
                        "Lambda-Runtime-Invoked-Function-Arn": FUNCTION_ARN,
                        "Lambda-Runtime-Trace-Id": _trace_id(),
                    },
                )

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                received = time.perf_counter()
                try:
                    body: Any = json.loads(raw) if raw else None
                except json.JSONDecodeError:
                    body = raw.decode("utf-8", "replace")
                error_type = self.headers.get("Lambda-Runtime-Function-Error-Type")
                if self.path == f"{EXTENSIONS_API_PREFIX}/register":
                    emulator.extensions.append(self.headers.get("Lambda-Extension-Name", ""))
                    identifier = str(uuid.uuid4())
                    self._reply(200, b"{}", {"Lambda-Extension-Identifier": identifier})
                    return
                if self.path == f"{RUNTIME_API_PREFIX}/init/error":
                    emulator.init_errors.append(
                        InvocationOutcome("init_error", body, error_type, received)
                    )
                    emulator._init_error_seen.set()
                    self._reply(202, b'{"status":"OK"}')
                    return
                match = re.fullmatch(
                    rf"{RUNTIME_API_PREFIX}/invocation/([^/]+)/(response|error)", self.path
                )
                kind = match.group(2) if match else ""
                outcome = InvocationOutcome(kind, body, error_type, received)
                if match is None or not emulator._record(match.group(1), outcome):
                    emulator.unexpected_requests.append(f"POST {self.path}")
                    self._reply(400, b'{"errorType":"InvalidRequestID"}')
                    return
                self._reply(202, b'{"status":"OK"}')

        return Handler


@dataclass
class RuntimeClientProcess:
    """A running ``python -m awslambdaric`` and the file its output goes to."""

    process: subprocess.Popen[str]
    log: Any

    def output(self) -> str:
        """Everything the process has printed so far (its logs, tracebacks)."""
        self.log.flush()
        self.log.seek(0)
        text: str = self.log.read()
        return text


@contextlib.contextmanager
def runtime_interface_client(
    image: EmulatedImage, api: RuntimeApiEmulator, extra_env: Mapping[str, str] | None = None
) -> Iterator[RuntimeClientProcess]:
    """Start ``python -m awslambdaric <CMD>`` on the task root, as the base image's bootstrap."""
    argv = [*isolated_python(image), "-m", "awslambdaric", *image.cmd]
    env = lambda_environment(image, {"AWS_LAMBDA_RUNTIME_API": api.address, **(extra_env or {})})
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8") as log:
        process = subprocess.Popen(
            argv, cwd=image.task_root, env=env, stdout=log, stderr=subprocess.STDOUT, text=True
        )
        try:
            yield RuntimeClientProcess(process, log)
        finally:
            process.kill()
            process.wait(timeout=10)


def decode_body(response: Mapping[str, Any]) -> Any:
    """The JSON body of a Lambda proxy response, base64 or not."""
    body = response.get("body") or ""
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body).decode("utf-8")
    return json.loads(body) if body else None


def load_event(name: str) -> dict[str, Any]:
    """One of the project's ready event files under lambda/events/."""
    event: dict[str, Any] = json.loads((EVENTS_DIR / name).read_text(encoding="utf-8"))
    return event


# -------------------------------------------------------------------------------------------------
# Budgets
# -------------------------------------------------------------------------------------------------


def tree_bytes(root: Path) -> int:
    """Uncompressed size: the sum of file sizes (as Lambda's 10 GB image limit counts them)."""
    return sum(p.lstat().st_size for p in root.rglob("*") if p.is_file() or p.is_symlink())


def largest_entries(root: Path, count: int = 12) -> list[tuple[str, int]]:
    """The task root's biggest top-level entries (packages, their .libs, the artifacts)."""
    sizes = []
    for entry in root.iterdir():
        size = tree_bytes(entry) if entry.is_dir() else entry.lstat().st_size
        sizes.append((entry.name, size))
    return sorted(sizes, key=lambda item: item[1], reverse=True)[:count]
