"""What `make bench` publishes: the markdown tables in docs/benchmarks.md and docs/benchmarks.png."""

from __future__ import annotations

from harness.compose_file import REPO
from lib.errors import StackError
from servers import VARIANTS

CONCURRENCY = (1, 8, 32)
# The order of the report's rows. Under Docker: baseline and stack; without
# Docker: baseline-native and native (same settings, this virtualenv's Python).
SERVERS = ("baseline", "stack", "baseline-native", "native")
BASELINE_OF = {"stack": "baseline", "native": "baseline-native"}  # what each server's ratios divide by
DOC = REPO / "docs" / "benchmarks.md"
PLOT = REPO / "docs" / "benchmarks.png"
TABLE_BEGIN, TABLE_END = "<!-- bench:begin -->", "<!-- bench:end -->"


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}×" if base else "n/a"


def report(results: dict) -> str:
    """The markdown tables for docs/benchmarks.md."""
    ingest_rows = {(r["server"], r["concurrency"]): r for r in results["ingest"]}
    lines = [f"Run {results['date']} on {results['machine']}; MLflow {results['mlflow']}; "
             f"{results['seconds']} s per ingest level. Ratios: stack ÷ baseline, native ÷ baseline-native.", "",
             "| exporters | server | traces/s | ratio | p50 ms | p95 ms | p99 ms | non-200 | lost | peak PSS MB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    servers = [name for name in SERVERS if name in results["idle_pss_mb"]]
    for concurrency in CONCURRENCY:
        for server in servers:
            base = ingest_rows.get((BASELINE_OF.get(server, server), concurrency))
            row = ingest_rows.get((server, concurrency))
            if row is None:
                continue
            non_200 = {code: n for code, n in row["statuses"].items() if code != "200"}
            lines.append(f"| {concurrency} | {server} | {row['traces_per_s']} | "
                         f"{ratio(row['traces_per_s'], base['traces_per_s']) if base else 'n/a'} | "
                         f"{row['p50_ms']} | {row['p95_ms']} | {row['p99_ms']} | "
                         f"{non_200 or 0}{' + ' + str(row['errors']) + ' errors' if row['errors'] else ''} | "
                         f"{row['lost']} | {row['peak_pss_mb']} |")
    lines += ["", "| stored traces | server | list p50 ms | list p95 ms | session p50 ms | session p95 ms |",
              "|---|---|---|---|---|---|"]
    for row in results["queries"]:
        lines.append(f"| {row['stored']} | {row['server']} | {row['list_p50_ms']} | {row['list_p95_ms']} | "
                     f"{row['session_p50_ms']} | {row['session_p95_ms']} |")
    idle = results["idle_pss_mb"]
    lines += ["", "| footprint | server | value | ratio |", "|---|---|---|---|"]
    for server in servers:
        base = BASELINE_OF.get(server, server)
        lines.append(f"| idle PSS, MB (all processes) | {server} | {idle[server]} | "
                     f"{ratio(idle[server], idle[base]) if base in idle else 'n/a'} |")
    if "up_seconds" in results:
        lines.append(f"| `make up` to bootstrap summary, s | stack | {results['up_seconds']} | |")
    variants = [name for name in VARIANTS if name in idle]
    if variants:
        lines += ["", "Tuning: the stack against itself with one setting put back to MLflow's default "
                  "(same run; ratios are the tuned stack ÷ the variant).", "",
                  "| server | what differs | idle PSS MB | traces/s x1 | traces/s x8 | p99 ms x8 | traces/s x32 | "
                  "non-200 | lost |", "|---|---|---|---|---|---|---|---|---|"]
        for name in ["stack", *variants]:
            rows = {r["concurrency"]: r for r in results["ingest"] if r["server"] == name}
            if not rows:
                continue
            what = "tuned defaults" if name == "stack" else VARIANTS[name][0]
            non_200 = sum(n for row in rows.values() for code, n in row["statuses"].items() if code != "200")
            cells = []
            for concurrency, key in ((1, "traces_per_s"), (8, "traces_per_s"), (8, "p99_ms"), (32, "traces_per_s")):
                value = rows.get(concurrency, {}).get(key, 0.0)
                tuned = ingest_rows.get(("stack", concurrency), {}).get(key, 0.0)
                cells.append(f"{value}" if name == "stack" else f"{value} ({ratio(tuned, value)})")
            idle_cell = f"{idle[name]}" if name == "stack" else f"{idle[name]} ({ratio(idle['stack'], idle[name])})"
            lines.append(f"| {name} | {what} | {idle_cell} | {' | '.join(cells)} | {non_200} | "
                         f"{sum(row['lost'] for row in rows.values())} |")
    return "\n".join(lines)


def write_doc(table: str) -> None:
    text = DOC.read_text() if DOC.exists() else f"# Benchmarks\n\n{TABLE_BEGIN}\n{TABLE_END}\n"
    if TABLE_BEGIN not in text or TABLE_END not in text:
        raise StackError(f"{DOC} lacks the {TABLE_BEGIN} / {TABLE_END} markers; restore them")
    head, rest = text.split(TABLE_BEGIN, 1)
    _, tail = rest.split(TABLE_END, 1)
    DOC.write_text(f"{head}{TABLE_BEGIN}\n{table}\n{TABLE_END}{tail}")


def write_plot(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (throughput, p99) = plt.subplots(1, 2, figsize=(10, 4))
    for server in SERVERS:
        rows = sorted((r for r in results["ingest"] if r["server"] == server), key=lambda r: r["concurrency"])
        if not rows:
            continue
        x = [r["concurrency"] for r in rows]
        throughput.plot(x, [r["traces_per_s"] for r in rows], marker="o", label=server)
        p99.plot(x, [r["p99_ms"] for r in rows], marker="o", label=server)
    for axis, title in ((throughput, "traces/s"), (p99, "p99 latency, ms")):
        axis.set_xscale("log", base=2)
        axis.set_xticks(list(CONCURRENCY), [str(c) for c in CONCURRENCY])
        axis.set_xlabel("concurrent exporters")
        axis.set_title(title)
        axis.grid(True, alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(PLOT, dpi=100)

