"""The release tool: solutions become stubs, hidden tests and solution-only cells go, outputs and metadata clear."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

from course_lib.publishing.release import main, release_notebook, release_source

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "release_fixture.ipynb"


@pytest.fixture(scope="module")
def student():
    return release_notebook(nbformat.read(FIXTURE, as_version=4), FIXTURE.name)


def test_solutions_become_stubs_at_their_indentation(student):
    source = student.cells[2].source
    assert '''def add(a, b):
    """Return a + b."""
    # YOUR CODE HERE
    raise NotImplementedError()


class Scaler:''' in source
    assert '''    def __call__(self, x):
        # YOUR CODE HERE
        raise NotImplementedError()''' in source
    assert "total" not in source and "self.factor = factor" in source and "SOLUTION" not in source
    ast.parse(source)
    namespace = {}
    exec(source, namespace)
    with pytest.raises(NotImplementedError):
        namespace["add"](1, 2)


def test_hidden_tests_and_solution_only_cells_go(student):
    sources = [cell.source for cell in student.cells]
    assert len(student.cells) == 6  # 9 cells - 2 solution-only - 1 made only of hidden tests
    assert sources[4] == 'assert add(1, 1) == 2, "add(1, 1) should be 2"\nprint("visible tests passed")'
    assert not any("HIDDEN" in s or "add(-1, 1)" in s or "secret_answer" in s or "instructors only" in s
                   for s in sources)
    assert sources[-1] == "print('the end')" and student.cells[-1].metadata.tags == ["keep-me"]


def test_outputs_counts_timings_and_widget_state_cleared(student):
    assert "widgets" not in student.metadata and student.metadata.kernelspec.name == "python3"
    for cell in student.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
            assert "execution" not in cell.metadata and "ExecuteTime" not in cell.metadata
    nbformat.validate(student)


def test_exercise_cells_may_raise(student):
    assert "raises-exception" in student.cells[2].metadata.tags      # holds the solutions
    assert student.cells[3].metadata.tags == ["exercise", "raises-exception"]
    assert "tags" not in student.cells[1].metadata


def test_instructor_notebook_is_not_modified():
    notebook = nbformat.read(FIXTURE, as_version=4)
    before = nbformat.writes(notebook)
    release_notebook(notebook)
    assert nbformat.writes(notebook) == before


def test_magics_and_nested_bodies():
    source = ("%timeit 1\ndef f(x):\n    if x:\n        ### BEGIN SOLUTION\n        return 1\n"
              "        ### END SOLUTION\n    return 0")
    assert release_source(source) == ("%timeit 1\ndef f(x):\n    if x:\n        # YOUR CODE HERE\n"
                                      "        raise NotImplementedError()\n    return 0")


@pytest.mark.parametrize("source, message", [
    ("def f():\n    ### BEGIN SOLUTION\n    return 1", "never closed"),
    ("def f():\n    return 1\n    ### END SOLUTION", "without a matching begin"),
    ("def f():\n    ### BEGIN SOLUTION\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION",
     "inside the region opened at line 2"),
    ("### BEGIN HIDDEN TESTS\nassert True\n### END SOLUTION", "without a matching begin"),
    ("### BEGIN SOLUTION\nx = 1\n### END SOLUTION", "must be inside a function or class body"),
    ("def f():\n    pass\n### BEGIN SOLUTION\nx = 1\n### END SOLUTION", "must be inside a function or class body"),
    ("def f():\n    ### BEGIN SOLUTION\n    return 1\ndef g():\n    ### END SOLUTION\n    pass", "one body"),
    ("def f():\n    ## BEGIN SOLUTION\n    return 1", "malformed marker"),
    ("def f(:\n    pass", "not valid Python"),
])
def test_bad_markers_raise(source, message):
    with pytest.raises(ValueError, match=message):
        release_source(source, "nb.ipynb, cell 3")


def test_markers_in_markdown_are_refused():
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("### BEGIN SOLUTION\nanswer")])
    with pytest.raises(ValueError, match="markdown cell"):
        release_notebook(notebook)


def test_command_line(tmp_path, capsys):
    source, target = tmp_path / "notebooks", tmp_path / "student"
    source.mkdir()
    (source / "a.ipynb").write_bytes(FIXTURE.read_bytes())
    assert main([str(source), str(target)]) == 0
    assert "released 1 notebook(s)" in capsys.readouterr().out
    assert "YOUR CODE HERE" in (target / "a.ipynb").read_text()
    broken = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION")])
    nbformat.write(broken, source / "b.ipynb")
    assert main([str(source), str(target)]) == 1
    assert "b.ipynb, cell 0, line 1" in capsys.readouterr().err
    assert main([str(source), str(source)]) == 1
