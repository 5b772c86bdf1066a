"""Exported decoders compute the same SDF as the reference forward pass."""
import shutil
import subprocess

import numpy as np
import pytest

from nis_fast.export import export, export_source
from nis_fast.core.normalization import Normalization
from nis_fast.core.layout import glorot_uniform
from reference import _mlp_forward_numpy as forward_numpy

C_MAIN = r"""
#include <stdio.h>
int main(void) {
    float p[3];
    while (scanf("%f %f %f", &p[0], &p[1], &p[2]) == 3) printf("%.9g %.9g\n", nis_sdf_unit(p), nis_sdf(p));
    return 0;
}
"""


class Shape:  # the duck type export() reads: params, transform, metadata
    def __init__(self, params, transform):
        self.params, self.transform, self.metadata = params, transform, {"name": "test"}


@pytest.fixture
def shape():
    params = glorot_uniform(seed=3) * 1.5  # scaled up so the output is not ~0
    params[-1] = 0.05
    return Shape(params, Normalization(np.array([0.5, -2.0, 3.0]), 0.25))


def test_c_export_compiles_and_matches_reference(tmp_path, shape):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    src = tmp_path / "decoder.c"
    src.write_text(export(shape, "c") + C_MAIN)
    exe = tmp_path / "decoder"
    subprocess.run([cc, "-std=c99", "-O2", "-Wall", "-Werror", "-o", str(exe), str(src), "-lm"], check=True)
    rng = np.random.default_rng(0)
    world = rng.uniform(-4, 4, size=(200, 3)).astype(np.float32)
    out = subprocess.run([str(exe)], input="\n".join(" ".join(repr(float(x)) for x in p) for p in world),
                         capture_output=True, text=True, check=True).stdout
    got = np.array([[float(x) for x in line.split()] for line in out.splitlines()])
    unit_ref = forward_numpy(shape.params, world)
    np.testing.assert_allclose(got[:, 0], unit_ref, atol=2e-6)
    world_ref = forward_numpy(shape.params, shape.transform.to_unit(world.astype(np.float64))) / shape.transform.scale
    np.testing.assert_allclose(got[:, 1], world_ref, atol=2e-5)


@pytest.mark.parametrize("language, stage", [("glsl", "frag"), ("hlsl", None)])
def test_shader_exports_are_valid(tmp_path, shape, language, stage):
    text = export(shape, language)
    assert "nis_sdf_unit" in text and text.count("NIS_PARAMS[") >= 3
    validator = shutil.which("glslangValidator")
    if validator is None:
        pytest.skip("glslangValidator not installed (Debian: glslang-tools)")
    path = tmp_path / f"shader.{stage or 'hlsl'}"
    if language == "glsl":
        path.write_text("#version 450\n" + text + "layout(location = 0) out vec4 color;\n"
                        "void main() { color = vec4(nis_sdf(gl_FragCoord.xyz)); }\n")
        cmd = [validator, str(path)]
    else:
        path = tmp_path / "shader.frag"  # glslang parses HLSL with -D; check it as a pixel shader
        path.write_text(text + "float4 main(float4 pos : SV_Position) : SV_Target { return nis_sdf(pos.xyz); }\n")
        cmd = [validator, "-D", "-V", "-e", "main", "-S", "frag", "-o", str(tmp_path / "out.spv"), str(path)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_export_rejects_bad_input(shape):
    with pytest.raises(ValueError, match="unknown language"):
        export(shape, "metal")
    with pytest.raises(ValueError, match="7553"):
        export_source(np.zeros(10), "c")
    bad = shape.params.copy()
    bad[5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        export_source(bad, "c")


def test_the_shape_name_cannot_inject_code(shape):
    shape.metadata = {"source": {"name": "bunny.obj\nint evil(void) { return 1; }\n/*"}}
    text = export(shape, "c")
    assert "bunny.obj" in text and "\nint evil" not in text and "/*" not in text
