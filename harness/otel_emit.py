"""Export one goose-shaped session with the stock OpenTelemetry SDK, configured only by the environment.

Run as `bash -c 'source .env && python harness/otel_emit.py SESSION_ID [--failed-tool]'`: the
exporter gets no argument, so endpoint, headers and service name come from the
OTEL_* variables exactly as any OTel SDK (and goose) reads them. Prints the
trace id (hex) on stdout; exits 1 if the export did not succeed.
"""

from __future__ import annotations

import sys

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult

PROMPT = "Résumé des fichiers: 日本語, emoji 🪿, quotes \"'"


class RecordingExporter(OTLPSpanExporter):
    """The stock exporter, remembering whether every export succeeded."""

    failures = 0

    def export(self, spans):
        result = super().export(spans)
        if result is not SpanExportResult.SUCCESS:
            RecordingExporter.failures += 1
        return result


def main(session_id: str, failed_tool: bool = False) -> int:
    provider = TracerProvider(resource=Resource.create())
    provider.add_span_processor(SimpleSpanProcessor(RecordingExporter()))
    tracer = provider.get_tracer("goose")
    with tracer.start_as_current_span("invoke_agent goose", attributes={
            "gen_ai.operation.name": "invoke_agent", "session.id": session_id,
            "gen_ai.conversation.id": session_id, "goose.prompt": PROMPT}) as root:
        with tracer.start_as_current_span("chat gpt-4o", attributes={
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o",
                "gen_ai.usage.input_tokens": 321, "gen_ai.usage.output_tokens": 45,
                "gen_ai.response.finish_reasons": ["tool_calls"]}):
            pass
        with tracer.start_as_current_span("execute_tool developer__shell", attributes={
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "developer__shell",
                "gen_ai.tool.call.id": "call_1", **({"error.type": "tool_error"} if failed_tool else {})}):
            pass
        trace_id = root.get_span_context().trace_id
    provider.shutdown()
    print(f"{trace_id:032x}")
    return 1 if RecordingExporter.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], failed_tool="--failed-tool" in sys.argv[2:]))
