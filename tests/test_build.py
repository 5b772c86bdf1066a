"""The build's record of the instruction sets the native module needs, and the check that turns a
CPU without them into an ImportError that says so (rather than an illegal instruction mid-query)."""
import platform

import pytest

from nis_fast.ops import native as _backend


def _cpuinfo(tmp_path, flags):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nvendor_id\t: Test\nflags\t\t: {' '.join(flags)}\n\nprocessor\t: 1\n")
    return str(path)


def test_missing_flags_are_named_in_order(tmp_path):
    info = _cpuinfo(tmp_path, ["fpu", "sse2", "avx2"])
    assert _backend.missing_cpu_flags(("sse2", "avx2"), info) == []
    assert _backend.missing_cpu_flags(("avx2", "avx512f", "fma"), info) == ["avx512f", "fma"]


def test_a_cpu_without_the_build_isa_gets_a_clear_import_error(tmp_path):
    info = _cpuinfo(tmp_path, ["fpu", "sse2"])
    with pytest.raises(ImportError, match=r"-march=native .* lacks avx2 avx512f: .*NIS_FAST_CPU_ARCH=x86-64-v2"):
        _backend.check_cpu("native", ("sse2", "avx2", "avx512f"), info)


def test_where_cpuinfo_cannot_tell_nothing_is_missing(tmp_path):
    absent = str(tmp_path / "absent")  # not Linux
    assert _backend.missing_cpu_flags(("avx2",), absent) == []
    _backend.check_cpu("native", ("avx2",), absent)
    no_flags_line = tmp_path / "arm"
    no_flags_line.write_text("processor\t: 0\nFeatures\t: fp asimd\n")
    assert _backend.missing_cpu_flags(("avx2",), str(no_flags_line)) == []
    assert _backend.missing_cpu_flags(("avx2",), _cpuinfo(tmp_path, [])) == ["avx2"]


def test_the_build_recorded_its_arch_and_this_cpu_has_what_it_needs():
    from nis_fast import _cpu_build

    flags = _backend.native.build_info()["cxx_flags"].split()
    assert (f"-march={_cpu_build.CPU_ARCH}" in flags) == bool(_cpu_build.CPU_ARCH)
    if _cpu_build.CPU_ARCH and platform.machine().lower() in ("x86_64", "amd64"):
        assert "sse4_2" in _cpu_build.CPU_FLAGS  # every -march the README names has it
    assert _backend.missing_cpu_flags(_cpu_build.CPU_FLAGS) == []
