"""The layout the README's file table shows: the guide's steps at the root, the shared modules in gan/, this machine's
tools in tools/; imports point down only (tools -> steps -> gan), and no shared module shadows a library it uses."""

import ast

from conftest import ROOT

STEPS = {p.stem for p in ROOT.glob("*.py")}
TOOLS = {p.stem for p in (ROOT / "tools").glob("*.py")}
PACKAGE = sorted((ROOT / "gan").glob("*.py"))


def imported(path):
    """Top-level names of every module `path` imports (absolute imports, at any depth of the file)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_package_imports_no_step_and_no_tool():
    for path in PACKAGE:
        upward = imported(path) & (STEPS | TOOLS)
        assert not upward, f"gan/{path.name} imports {sorted(upward)}"


def test_no_step_imports_a_tool():
    for path in ROOT.glob("*.py"):
        assert not imported(path) & TOOLS, path.name


def test_no_shared_module_shadows_a_library():
    shadowing = {p.stem for p in PACKAGE} & {"io", "onnx", "onnxruntime", "numpy", "torch", "json", "os", "time", "signal", "PIL"}
    assert shadowing == set()
    assert TOOLS == {"GAN_benchmark", "GAN_int8_schemes", "GAN_pipeline_benchmark", "GAN_train"}
    for name in ("README.md", "README.zh-CN.md"):  # the file table names the new places
        text = (ROOT / name).read_text()
        assert all(f"`tools/{tool}.py`" in text for tool in TOOLS) and "`gan/`" in text, name
