"""What a release promises beyond the kernels: a light `import fastcnn` and the build facts that
`fastcnn info` reports."""

from __future__ import annotations

import subprocess
import sys

import fastcnn

# Only fastcnn's own lazy modules and the big optional packages: the interpreter's site hooks (an
# editable install's loader, for one) may import stdlib modules such as zipfile themselves.
HEAVY = ["fastcnn.datasets", "fastcnn.optim", "fastcnn.data", "fastcnn.io", "matplotlib", "torch"]


def test_import_fastcnn_leaves_optional_modules_unloaded():
    code = "import sys, fastcnn; print(' '.join(sorted(sys.modules)))"
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    assert "fastcnn._core" in loaded
    assert not loaded & set(HEAVY)


def test_lazy_names_resolve_on_first_use():
    assert fastcnn.optim.SGD.__module__ == "fastcnn.optim"
    assert callable(fastcnn.datasets.fashion_mnist_subset)
    assert fastcnn.data.DataLoader.__module__ == "fastcnn.data"
    assert fastcnn.save.__module__ == "fastcnn.io"
    assert {"optim", "datasets", "data", "save", "load", "load_checkpoint"} <= set(dir(fastcnn))
    assert set(fastcnn.__all__) <= set(dir(fastcnn))


def test_info_reports_build_facts():
    info = fastcnn.info()
    for key in (
        "version",
        "cpu_variant",
        "cpu_variants_compiled",
        "openmp",
        "openmp_version",
        "compiler",
        "cuda_built",
        "sanitizers",
        "optimized",
        "pybind11",
        "numpy",
    ):
        assert key in info, key
    assert info["sanitizers"] in ("none", "address,undefined")
    assert info["cpu_variant"] in info["cpu_variants_compiled"]
    assert info["openmp_version"] is None or info["openmp_version"] >= 200505
