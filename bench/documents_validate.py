"""How long validating a workflow document at the upload limits takes (the budget is 50 ms).

Builds a document at every limit at once (256 KB, 200 steps, 1,000 edges), then times
``load_definition`` (parse, every check, compile) on its JSON and YAML text, and ``check_document``
on a document with 1,000 distinct edge conditions (the condition compiler's worst case).

    .venv/bin/python bench/documents_validate.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import yaml

from flowdeck_engine.conditions import _compile
from flowdeck_engine.documents import DocumentLimits, check_document, load_definition

LIMITS = DocumentLimits()
STEPS = LIMITS.max_steps


def form(i: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "approved": {"type": "boolean"},
            "amount": {"type": "number", "minimum": 0, "maximum": 1_000_000},
            "comment": {"type": "string", "maxLength": 2000},
            "category": {"enum": ["travel", "meals", "hardware", "software", f"other-{i}"]},
            "items": {"type": "array", "items": {"type": "object", "properties": {"sku": {"type": "string"}}}},
        },
        "required": ["approved"],
    }


def step(i: int) -> dict[str, Any]:
    name = f"step_{i:03d}"
    if i == STEPS - 1:
        return {"name": name, "kind": "machine", "action": {"type": "emit", "event": "done", "payload": {"n": "1"}}}
    kind = i % 5
    if kind == 0:
        return {"name": name, "kind": "gateway", "mode": "exclusive"}
    if kind == 1:
        return {
            "name": name,
            "kind": "human",
            "title": f"Approve request {i}",
            "form": form(i),
            "assignee_expression": f"context.get('manager_{i}')",
            "candidate_groups": ["managers", "finance"],
            "due": "P2D",
            "reminder": "PT12H",
            "escalation": {"after": "P1D", "reassign_to": ["finance-leads"]},
        }
    if kind == 2:
        values = {f"key_{i}_{j}": f"context.get('amount_{j}', 0) * {j + 1} + {i}" for j in range(3)}
        return {"name": name, "kind": "machine", "action": {"type": "set", "values": values}}
    if kind == 3:
        return {
            "name": name,
            "kind": "machine",
            "action": {"type": "http", "url": f"https://api.example.com/v1/items/{i}", "body": {"id": "/id"}},
            "retry": {"max_attempts": 3, "initial_interval": "PT5S"},
        }
    return {"name": name, "kind": "timer", "duration": f"PT{i}M"}


def document(*, all_conditional: bool = False) -> dict[str, Any]:
    steps = [step(i) for i in range(STEPS)]
    edges: list[dict[str, Any]] = []
    for i in range(STEPS - 1):
        gateway = steps[i]["kind"] == "gateway"
        targets = range(i + 1, min(i + 6, STEPS))
        for k, j in enumerate(targets):
            edge: dict[str, Any] = {"source": steps[i]["name"], "target": steps[j]["name"]}
            if gateway and k == len(targets) - 1:
                edge["default"] = True
            elif gateway or all_conditional:
                edge["condition"] = f"context.get('amount_{i}') > {j * 100} and context.get('region') in ['eu', 'us']"
            edges.append(edge)
    skip = 0
    while len(edges) < LIMITS.max_edges:  # long jumps, to reach the edge limit
        source, target = steps[skip]["name"], steps[skip + 7]["name"]
        if steps[skip]["kind"] != "gateway":
            edges.append({"source": source, "target": target})
        skip += 1
    doc = {
        "format": "flowdeck.workflow/v1",
        "name": "at-the-limits",
        "version": "1.0.0",
        "description": "",
        "initial_step": steps[0]["name"],
        "terminal_steps": [steps[-1]["name"]],
        "steps": steps,
        "edges": edges,
    }
    text = "Checks the request and records the outcome. " * 20
    per_step = 0
    for s in steps:  # pad to just under the size limit, as JSON and as YAML
        s["description"] = ""
    while max(len(json.dumps(doc).encode()), len(yaml.safe_dump(doc, sort_keys=False).encode())) < LIMITS.max_bytes:
        per_step += 8
        for s in steps:
            s["description"] = text[:per_step]
    for s in steps:
        s["description"] = text[: per_step - 8]
    return doc


def timed(fn: Any, runs: int) -> list[float]:
    fn()  # warm up: imports, metaschema validators
    samples = []
    for _ in range(runs):
        _compile.cache_clear()  # each run is a fresh upload: no condition compiled before
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def report(label: str, size: int, samples: list[float]) -> None:
    p95 = sorted(samples)[int(len(samples) * 0.95) - 1]
    print(f"{label:<44} {size / 1024:6.1f} KiB  median {statistics.median(samples):6.1f} ms  p95 {p95:6.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    runs = parser.parse_args().runs
    doc = document()
    as_json = json.dumps(doc).encode()
    as_yaml = yaml.safe_dump(doc, sort_keys=False).encode()
    worst = json.dumps(document(all_conditional=True)).encode()
    print(f"steps {len(doc['steps'])}, edges {len(doc['edges'])}, limit {LIMITS.max_bytes / 1024:.0f} KiB; {runs} runs")
    definition = load_definition(as_json)
    assert len(definition.steps) == STEPS
    assert len(definition.edges) == LIMITS.max_edges
    assert not check_document(worst), check_document(worst)[:3]
    report("load_definition, JSON text", len(as_json), timed(lambda: load_definition(as_json), runs))
    report("load_definition, YAML text", len(as_yaml), timed(lambda: load_definition(as_yaml, syntax="yaml"), runs))
    report("check_document, JSON, 1,000 distinct conditions", len(worst), timed(lambda: check_document(worst), runs))


if __name__ == "__main__":
    main()
