"""The exporter builds graphs from one table (export/search_graphs.GRAPH_BUILDERS, review 17 #9): every graph a
variant of runtime/variants.py runs has a builder, a row without one is caught at import, and the host-head
graphs use the host kernel's panel width (runtime/backends/host_head.PANEL), not a copy of it."""
from __future__ import annotations

import dataclasses

import pytest

pytest.importorskip("onnx")
torch = pytest.importorskip("torch")

from edge_ad.export import exporter, search_graphs  # noqa: E402
from edge_ad.runtime import variants  # noqa: E402


def test_every_variant_graph_has_a_builder():
    names = {g for v in variants.VARIANTS.values() for g in v.graphs + v.z_graphs}
    assert names <= set(search_graphs.GRAPH_BUILDERS), names - set(search_graphs.GRAPH_BUILDERS)
    assert search_graphs.unbuilt_graphs() == []
    # a new row whose graph nobody builds is named (search_graphs raises ImportError with it at import)
    new = dataclasses.replace(variants.VARIANTS["fused-adam"], name="new", graphs=("grad_new_seed", "final_seed"),
                              z_graphs=("grad_z_new_seed", "final_seed"))
    assert search_graphs.unbuilt_graphs({**variants.VARIANTS, "new": new}) == ["grad_new_seed", "grad_z_new_seed"]


def test_the_host_head_panel_is_the_kernels():
    """One definition of the host head's panel width: host_head.PANEL (the C kernel's). Review 17b #5: an
    ``==`` check passed with a second literal 32 in export/, so no module-level *HEAD_PANEL* name in
    export/ may be assigned a number; search_graphs takes PANEL from host_head."""
    import ast
    from pathlib import Path

    from edge_ad.runtime.backends import host_head
    assert search_graphs.HOST_HEAD_PANEL == host_head.PANEL and search_graphs.PANEL is host_head.PANEL
    literal = []
    for path in sorted(Path(search_graphs.__file__).parent.glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
                node, ast.AnnAssign) else []
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            if any("HEAD_PANEL" in n or n == "PANEL" for n in names) and isinstance(node.value, ast.Constant):
                literal.append(f"{path.name}:{node.lineno} {names}")
    assert literal == [], f"a copy of host_head.PANEL: {literal}"


@pytest.mark.parametrize("k, lr_theta", [(0, 6e-9), (2, 6e-9), (2, 0.0)])
def test_each_exported_graph_comes_from_its_row(tmp_path, tiny_generator, k, lr_theta):
    """write_graphs over every graph the export's variants need: one file per graph, the all-seeds
    graphs' Adam count as their row says (verify_graph counts eps-guarded denominators), k recorded for
    the unrolled graph only."""
    from edge_ad.runtime.config import SearchConfig
    cfg = SearchConfig(k=k, n_seed=2, lr_theta=lr_theta)
    params, bn = search_graphs.generator_arrays(tiny_generator)
    arch = search_graphs.arch_of(tiny_generator, cfg.n_seed, 1 << 20)
    chosen = variants.for_export(cfg, variants.TARGETS, unrolled=True)
    names = variants.graphs_for_export(cfg, chosen)
    out = search_graphs.write_graphs(tiny_generator, bn, cfg, arch, tmp_path, names)
    assert set(out) == set(names)                      # the width-8 layout has a host head
    n_state = len(arch.state())
    for name, entry in out.items():
        assert (tmp_path / entry["file"]).is_file() and entry["file"] == f"{name}.onnx"
        row = search_graphs.GRAPH_BUILDERS[name]
        if isinstance(row, search_graphs.AllSeedsGraph):
            assert entry["check"]["eps_adds"] == row.n_adam(n_state, cfg.k), (name, entry["check"])
            assert ("k" in entry) == (name == "unrolled")


def test_checkpoint_threshold_keeps_its_name_and_signature(caplog):
    """Review 17b #7: exporter.checkpoint_threshold(scoring, cfg, log) (renamed stored_threshold, which
    takes spec third) still answers as before: the stored threshold for its own configuration, None for
    another with the reason passed to ``log`` (third positional, as it was)."""
    from edge_ad.runtime.config import SearchConfig
    cfg = SearchConfig(k=2, n_seed=1)
    thr = {"value": 0.042, "target_fpr": 0.05, "n_normal": 100, "normal": "val", "search": cfg.to_dict()}
    scoring = {"name": "x", "search": cfg.to_dict(), "threshold": thr}
    said = []
    got = exporter.checkpoint_threshold(scoring, cfg, said.append)
    assert got == exporter.stored_threshold(scoring, cfg, log=said.append) and got["value"] == 0.042
    assert exporter.checkpoint_threshold(scoring, cfg.replace(k=3), said.append) is None and said
