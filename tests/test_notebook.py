"""docs/notebooks/quickstart.ipynb, executed top to bottom by nbclient in a real ipykernel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbclient
import nbformat
from jupyter_client.kernelspec import NATIVE_KERNEL_NAME

NOTEBOOK = Path(__file__).parent.parent / "docs" / "notebooks" / "quickstart.ipynb"


def text_of(cell: Any) -> str:
    """A code cell's stdout and the text/markdown (or text/plain) of its result."""
    parts: list[str] = []
    for output in cell.outputs:
        assert output.output_type != "error", "\n".join(output.traceback)
        if output.output_type == "stream":
            if output.name == "stderr":  # only the report of a failed run nothing handled
                assert output.text.startswith("asyncflow: workflow "), output.text
                continue
            assert output.name == "stdout", output.text
            parts.append(output.text)
        elif output.output_type in ("execute_result", "display_data"):
            data = output.data
            parts.append(data.get("text/markdown", data.get("text/plain", "")))
    return "".join(parts)


def test_quickstart_notebook_fails_then_resumes_with_top_level_await(tmp_path: Path) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    # The kernel is this interpreter's ipykernel (the native "python3" kernel), started in
    # a temp folder: nothing is fetched, nothing is left behind in the repository.
    assert notebook.metadata.kernelspec.name == NATIVE_KERNEL_NAME
    client = nbclient.NotebookClient(
        notebook,
        timeout=60,
        kernel_name=NATIVE_KERNEL_NAME,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1))
    setup, first, second, picture, watch = (text_of(cell) for cell in code)

    assert setup == ""
    assert first.splitlines() == [
        "workflow quickstart: failed",
        "  extract    completed -> {'rows': [3, 1, 2]}",
        "  transform  completed -> {'rows': [1, 2, 3]}",
        "  load       failed: RuntimeError('the warehouse is down')",
    ]
    # The second run shows the restored steps, and only `load` really ran.
    assert second.splitlines() == [
        "workflow quickstart: completed",
        "  extract    restored from checkpoint",
        "  transform  restored from checkpoint",
        "  load       completed -> {'loaded': 3}",
        "ran this time: ['load']",
    ]
    assert picture.splitlines() == [
        "```mermaid",
        "graph LR",
        "A[extract] -->|skipped| B[transform]",
        "B -->|skipped| C[load]",
        "C -->|completed| D((done))",
        "style A fill:#9e9e9e,color:#fff",
        "style B fill:#9e9e9e,color:#fff",
        "style C fill:#4caf50,color:#fff",
        "",
        "```",
    ]
    assert watch.splitlines() == [
        "WorkflowStarted ",
        "TaskSkipped extract",
        "TaskSkipped transform",
        "TaskSkipped load",
        "WorkflowFinished ",
    ]


def test_the_stored_notebook_has_no_outputs() -> None:
    """Outputs are produced by the test, never committed (they would go stale)."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == []
            assert cell.execution_count is None
