"""The course's rule on library answers, as the re-grade flags it.

**Rule.** An exercise may use ``course_lib`` and torch freely, except the function (or class, or method) that
implements the exercise itself: ``causal_attention`` may not call ``scaled_dot_product_attention(..., is_causal=True)``,
``update_memory`` may not call the library's ``update_memory``, ``evaluate_with_memory`` may not call
``forward_in_segments``. The notebooks import these functions for their narrative, so a student can reach them; a
check cannot tell a wrapped library call from the student's own code (the answers are equal), so the re-grade flags
the call for the instructor, who decides. A function that *is* the library's (``stlr = slanted_triangular_lr``)
already fails in the grader ("a library function, not code written in the notebook"); ``xl_evaluation`` also fails
a call into ``forward_in_segments`` or its own reference at run time.

``ANSWERS`` maps each registered check to the names that implement its answer. A use is flagged inside the exercise
function and inside the notebook's own functions it calls (a wrapper in another cell): a name the notebook imported
under that original name (``from course_lib.blocks.attention import scaled_dot_product_attention as sdpa``) or an
attribute of that name (``F.scaled_dot_product_attention``, ``TransformerXLLMHeadModel.forward_in_segments``). The
fine-tuning exercises have no entry: training with ``course_lib``'s ``fit`` is the point there.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping

ANSWERS: dict[str, frozenset[str]] = {
    "scaled_dot_product_attention": frozenset({"scaled_dot_product_attention", "MultiHeadAttention"}),
    "causal_attention": frozenset({"scaled_dot_product_attention", "MultiHeadAttention"}),
    "multiple_choice_input": frozenset({"multiple_choice_inputs", "multiple_choice_batch"}),
    "mlm_masking": frozenset({"mask_tokens"}),
    "discriminative_lr_groups": frozenset({"discriminative_param_groups", "discriminative_lrs"}),
    "slanted_triangular_lr": frozenset({"slanted_triangular_lr"}),
    "scalar_mix": frozenset({"ScalarMix"}),
    "reverse_padded": frozenset({"reverse_padded"}),
    "relative_shift": frozenset({"relative_shift", "RelativeMultiHeadAttention"}),
    "memory_update": frozenset({"update_memory"}),
    "xl_evaluation": frozenset({"forward_in_segments"}),
    "sampling_filters": frozenset({"top_k_filter", "top_p_filter"}),
    "pre_ln_stack": frozenset({"TransformerBlock"}),
}


def library_answer_flags(trees: list[tuple[int, ast.Module]], checks: Mapping[str, str]) -> list[tuple[int, str]]:
    """``(cell, reason)`` for each exercise function (``checks``: function name -> its check) that reaches its own
    check's library answer, directly or through functions the notebook defines."""
    imported: dict[str, str] = {}  # local name -> the name it was imported under
    defined: dict[str, tuple[int, ast.AST]] = {}
    for index, tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                imported.update({alias.asname or alias.name: alias.name for alias in node.names})
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined[node.name] = (index, node)
    found = []
    for function, check in checks.items():
        answers = ANSWERS.get(check, frozenset())
        if not answers or function not in defined:
            continue
        reason = _reaches(function, answers, imported, defined, [function], set())
        if reason is not None:
            found.append((defined[function][0], f"`{function}` {reason}: the library's answer to `{check}` (course "
                                                 "rule: an exercise may not call the function that implements it)"))
    return found


def _reaches(name: str, answers: frozenset[str], imported: dict[str, str], defined: dict, path: list[str],
             seen: set[str]) -> str | None:
    """How the notebook function ``name`` reaches one of ``answers`` (``calls X``, ``calls X through `h```), or None."""
    seen.add(name)
    body = defined[name][1]
    for node in ast.walk(body):
        used = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None
        if isinstance(node, ast.Attribute) and used in answers:
            return f"calls {ast.unparse(node)}" + _through(path)
        if isinstance(node, ast.Name) and imported.get(used) in answers and used not in defined:
            original = imported[used]
            return f"calls {used}" + (f" ({original})" if original != used else "") + _through(path)
    for node in ast.walk(body):
        if isinstance(node, ast.Name) and node.id in defined and node.id not in seen and node.id != name:
            reason = _reaches(node.id, answers, imported, defined, [*path, node.id], seen)
            if reason is not None:
                return reason
    return None


def _through(path: list[str]) -> str:
    return "" if len(path) == 1 else " through " + ", ".join(f"`{name}`" for name in path[1:])
