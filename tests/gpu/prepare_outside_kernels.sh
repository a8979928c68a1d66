#!/usr/bin/env bash
# Bring the GDN decode kernels of vLLM, SGLang and FlashInfer to a GPU machine
# that has no internet and no room for the packages themselves.
#
# Run here (pip can reach PyPI). It downloads the wheels (no dependencies)
# into $WHEELS and extracts only the modules each kernel needs into $DEST
# (default: .gpu/outside at the repository root; git-ignored), under stub
# parent packages where the real __init__ would import the whole package:
#
#   vllm    the ops modules that define fused_recurrent_gated_delta_rule_packed_decode
#           and fused_sigmoid_gating_delta_rule_update and their imports inside
#           vLLM; vllm.platforms, vllm.triton_utils and vllm.utils.platform_utils
#           are stubs that answer the same questions from torch and triton.
#   sglang  the module that defines the packed decode op and its imports inside
#           SGLang; sglang.srt.utils.common is a stub with torch_release.
#
# FlashInfer's GDN decode is CuTe DSL: it needs nvidia-cutlass-dsl (about 92 MB
# compressed, 240 MB installed), cuda-bindings and apache-tvm-ffi, more than one
# carry (64 MiB) can hold. With FLASHINFER=1 the wheels it needs and the
# FlashInfer modules are packed into parts of at most 45 MiB beside $DEST,
# in .gpu/fi-part-N/ (one part per device call; tests/gpu/run_outside_kernels.sh
# unpacks them there once all parts have arrived).
#
# Then, with TRITON_INTERPRET=1 here, it checks that every adapter whose
# kernel is Triton loads from $DEST and runs a tiny case through the harness
# (bf16 activations; a failure there is a finding about the kernel, a crash
# is this script's fault and stops it).
#
#   bash tests/gpu/prepare_outside_kernels.sh            # vLLM and SGLang
#   FLASHINFER=1 bash tests/gpu/prepare_outside_kernels.sh
#   VLLM_VERSION=0.30.0 bash tests/gpu/prepare_outside_kernels.sh
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DEST=${DEST:-$ROOT/.gpu/outside}
PARTS=$(dirname "$DEST")  # FlashInfer parts go beside $DEST
WHEELS=${WHEELS:-/tmp/gdn-outside-wheels}
VLLM_VERSION=${VLLM_VERSION:-0.34.0}
SGLANG_VERSION=${SGLANG_VERSION:-0.5.23}
FLASHINFER_VERSION=${FLASHINFER_VERSION:-0.7.4}
PYVER=${PYVER:-3.12}  # the GPU machine's Python
FLASHINFER=${FLASHINFER:-0}
PART_MB=45

mkdir -p "$WHEELS"
download() {  # download NAME==VERSION...: wheels for the GPU machine, no dependencies
    pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" \
        --platform manylinux_2_34_x86_64 --platform manylinux_2_28_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$WHEELS" "$@" 2>&1 | grep -v "^WARNING: Location" || true
}
wheel_of() { ls "$WHEELS"/"$1"-"$2"-*.whl 2>/dev/null | head -1; }

download "vllm==$VLLM_VERSION" "sglang==$SGLANG_VERSION"
VLLM_WHEEL=$(wheel_of vllm "$VLLM_VERSION")
SGLANG_WHEEL=$(wheel_of sglang "$SGLANG_VERSION")
[ -n "$VLLM_WHEEL" ] && [ -n "$SGLANG_WHEEL" ] || { echo "download failed" >&2; exit 1; }

rm -rf "$DEST" && mkdir -p "$DEST"
python3 - "$DEST" "$VLLM_WHEEL" "$SGLANG_WHEEL" <<'PY'
"""Extract the modules that define each op, and what they import at module
level inside their own package, from the wheel; write stubs for the rest."""
import ast
import re
import sys
import zipfile
from pathlib import Path

dest, vllm_wheel, sglang_wheel = Path(sys.argv[1]), sys.argv[2], sys.argv[3]

VLLM_PLATFORMS = '''"""Stub of vllm.platforms: what vLLM's GDN ops ask, answered from torch."""
from typing import NamedTuple

import torch


class DeviceCapability(NamedTuple):
    major: int
    minor: int

    def to_int(self) -> int:
        return self.major * 10 + self.minor


class _Platform:
    def is_cuda(self):
        return torch.cuda.is_available() and torch.version.hip is None

    def is_rocm(self):
        return torch.cuda.is_available() and torch.version.hip is not None

    def is_cuda_alike(self):
        return torch.cuda.is_available()

    def is_xpu(self):
        return False

    def is_cpu(self):
        return not torch.cuda.is_available()

    def get_device_name(self, device_id=0):
        return torch.cuda.get_device_name(device_id)

    def get_device_capability(self, device_id=0):
        if not torch.cuda.is_available():
            return None
        return DeviceCapability(*torch.cuda.get_device_capability(device_id or 0))

    def has_device_capability(self, capability, device_id=0):
        cap = self.get_device_capability(device_id)
        if cap is None:
            return False
        return cap >= capability if isinstance(capability, tuple) else cap.to_int() >= capability

    def is_device_capability(self, capability, device_id=0):
        cap = self.get_device_capability(device_id)
        if cap is None:
            return False
        return cap == capability if isinstance(capability, tuple) else cap.to_int() == capability

    def is_device_capability_family(self, capability, device_id=0):
        cap = self.get_device_capability(device_id)
        return cap is not None and cap.to_int() // 10 == capability // 10


current_platform = _Platform()
'''
VLLM_TRITON_UTILS = '''"""Stub of vllm.triton_utils: Triton itself."""
import triton
import triton.language as tl
import triton.language.extra.libdevice as tldevice

HAS_TRITON = True
'''
VLLM_PLATFORM_UTILS = '''"""Stub of vllm.utils.platform_utils."""
import torch


def cuda_get_device_properties(device, names, init_cuda=False):
    props = torch.cuda.get_device_properties(device)
    return tuple(getattr(props, name) for name in names)
'''
SGLANG_COMMON = '''"""Stub of sglang.srt.utils.common: what SGLang's FLA ops import from it."""
import torch
from packaging import version

torch_release = version.parse(torch.__version__).release
'''


def version_of(wheel):
    return Path(wheel).name.split("-")[1]


def module_of(path):
    return path[: -len(".py")].replace("/", ".").removesuffix(".__init__")


def top_level_imports(source, module, is_pkg):
    """Modules imported by statements outside functions and classes."""
    base = module if is_pkg else module.rpartition(".")[0]
    found = []

    def visit(body):
        for node in body:
            if isinstance(node, ast.Import):
                found.extend(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                if node.level:
                    b = base
                    for _ in range(node.level - 1):
                        b = b.rpartition(".")[0]
                    mod = f"{b}.{mod}" if mod else b
                found.append(mod)
                found.extend(f"{mod}.{a.name}" for a in node.names)
            elif isinstance(node, (ast.If, ast.Try)):
                for part in ("body", "orelse", "finalbody"):
                    visit(getattr(node, part, []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(ast.parse(source).body)
    return found


def extract(wheel, package, ops, stubs):
    z = zipfile.ZipFile(wheel)
    files = {module_of(n): n for n in z.namelist() if n.endswith(".py")}
    starts = []
    for mod, name in files.items():
        text = z.read(name).decode("utf-8", "replace")
        if any(re.search(rf"^def {op}\(", text, re.M) for op in ops):
            if mod.split(".")[1] in ("models", "hardware_backend", "_cpu_ops"):
                continue  # model-specific or other-hardware copies
            starts.append(mod)
    known = set(files) | set(stubs)
    taken, todo, missing = {}, list(starts), set()
    while todo:
        mod = todo.pop()
        if mod in taken or mod in stubs:
            continue
        taken[mod] = files[mod]
        text = z.read(files[mod]).decode()
        for imp in top_level_imports(text, mod, files[mod].endswith("__init__.py")):
            if imp.split(".")[0] != package:
                continue
            if imp in known:
                todo.append(imp)
            elif imp.rpartition(".")[0] not in known:  # not an attribute of a known module
                missing.add(imp)
    if missing:
        sys.exit(f"{package}: imports neither extracted nor stubbed: {sorted(missing)}")
    for mod, name in taken.items():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith("__init__.py") and mod not in starts:
            target.write_text("")  # a parent package: stubbed, it would import everything
        else:
            target.write_bytes(z.read(name))
    for mod, text in stubs.items():
        target = dest / (mod.replace(".", "/") + ("/__init__.py" if "." not in mod or mod in PKGS else ".py"))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    for path in list(dest.joinpath(package).rglob("*.py")):  # every parent is a package
        for parent in path.relative_to(dest).parents:
            if str(parent) != "." and not (dest / parent / "__init__.py").exists():
                (dest / parent / "__init__.py").write_text("")
    for mod in taken:
        text = (dest / taken[mod]).read_text()
        used = set(re.findall(r"current_platform\.(\w+)", text))
        lacking = {u for u in used if not re.search(rf"def {u}\(", VLLM_PLATFORMS)}
        if lacking:
            sys.exit(f"{mod} uses current_platform.{sorted(lacking)}, which the stub lacks")
    print(f"{package} {version_of(wheel)}: " + ", ".join(sorted(starts)))


PKGS = {"vllm.platforms", "vllm.triton_utils", "vllm.utils", "sglang.srt.utils"}
vllm_version = version_of(vllm_wheel)
extract(
    vllm_wheel,
    "vllm",
    ["fused_recurrent_gated_delta_rule_packed_decode", "fused_sigmoid_gating_delta_rule_update"],
    {
        "vllm": f'"""Stub parent package."""\n__version__ = "{vllm_version}"\n',
        "vllm.platforms": VLLM_PLATFORMS,
        "vllm.triton_utils": VLLM_TRITON_UTILS,
        "vllm.utils": "",
        "vllm.utils.platform_utils": VLLM_PLATFORM_UTILS,
    },
)
sglang_version = version_of(sglang_wheel)
extract(
    sglang_wheel,
    "sglang",
    ["fused_recurrent_gated_delta_rule_packed_decode"],
    {
        "sglang": f'"""Stub parent package."""\n__version__ = "{sglang_version}"\n',
        "sglang.srt.utils": "",
        "sglang.srt.utils.common": SGLANG_COMMON,
    },
)
PY

if [ "$FLASHINFER" = 1 ]; then
    download "flashinfer-python==$FLASHINFER_VERSION" nvidia-cutlass-dsl-libs-base \
        nvidia-cutlass-dsl-libs-cu13 nvidia-cutlass-dsl cuda-bindings cuda-pathfinder \
        apache-tvm-ffi nvidia-ml-py filelock einops
    STAGE=$(mktemp -d)
    FI_WHEEL=$(wheel_of flashinfer_python "$FLASHINFER_VERSION")
    # FlashInfer without its 450 MB of prebuilt cubins and sources (data/):
    # the GDN kernels are CuTe DSL, compiled on first use.
    mkdir -p "$STAGE/flashinfer-src"
    (cd "$STAGE/flashinfer-src" && unzip -q "$FI_WHEEL" -x 'flashinfer/data/*')
    (cd "$STAGE/flashinfer-src" && tar -cJf "$STAGE/flashinfer.tar.xz" .)
    rm -rf "$STAGE/flashinfer-src"
    for w in "$WHEELS"/*.whl; do
        case $(basename "$w") in vllm-* | sglang-* | flashinfer_python-*) ;; *) cp "$w" "$STAGE/" ;; esac
    done
    rm -rf "$PARTS"/fi-part-*
    (cd "$STAGE" && tar -cf - ./*.whl flashinfer.tar.xz) | split -b "${PART_MB}m" -d - "$STAGE/part-"
    n=0
    for p in "$STAGE"/part-*; do
        mkdir -p "$PARTS/fi-part-$n" && mv "$p" "$PARTS/fi-part-$n/chunk"
        n=$((n + 1))
    done
    echo "$n" > "$PARTS/fi-part-0/count"
    rm -rf "$STAGE"
    du -sh "$PARTS"/fi-part-*
fi

echo "size of $DEST: $(du -sh "$DEST" | cut -f1) ($(du -sb "$DEST" | cut -f1) bytes)"

# The check: each Triton adapter loads from $DEST and runs a tiny case here.
if [ "${CHECK:-1}" = 1 ]; then
    cd "$ROOT"
    export PYTHONPATH="$ROOT:$DEST" TRITON_INTERPRET=1
    python3 -m harness impls | grep -E "^ *(vllm|vllm-sigmoid-gating|sglang)\b" || true
    python3 - <<'PY'
import sys

import triton
import triton.language as tl

from harness.core.spec import CaseSpec, SlotSpec
from harness.impls.registry import load_implementation
from harness.run.runner import run_case

case = CaseSpec(
    file="outside.yaml", name="tiny", line=1, B=3, H=1, HV=2, K=16, V=16, pool=6,
    slots=SlotSpec(order="reverse"),
)


# The Triton interpreter runs only tl.* reached through the tl module; vLLM's
# op.py binds `exp = tl.exp` at import, so for this CPU check alone the
# kernels' bare names are rebound to jitted forwarders (never on the GPU).
@triton.jit
def exp(x):
    return tl.exp(x)


@triton.jit
def log(x):
    return tl.log(x)


def interpretable():
    for mod in list(sys.modules.values()):
        if getattr(mod, "__name__", "").startswith(("vllm.", "sglang.")):
            for name, shim in (("exp", exp), ("log", log)):
                if getattr(mod, name, None) is getattr(tl, name):
                    setattr(mod, name, shim)


for name in ("vllm", "vllm-sigmoid-gating", "sglang"):
    impl = load_implementation(name)
    interpretable()
    result = run_case(case, impl, None, device="cpu")
    print(f"{name}: {result.status} {impl.fn.conventions}")
    for violation in result.violations:
        print("   ", str(violation)[:300])
    # A failure is a finding about the kernel; a crash is the extraction's fault.
    assert result.status != "crashed", result.reason
PY
fi
