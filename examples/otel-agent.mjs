// An OpenTelemetry-instrumented agent (GenAI semantic conventions) exporting to agent-ledger
// over OTLP/HTTP protobuf: no agent-ledger code in the agent, only the exporter's endpoint.
//
//   npm run build
//   export LEDGER_TOKEN=$(npm run -s token -- --tenant acme --scope events:write)
//   node examples/otel-agent.mjs
//
// The endpoint is OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (default $LEDGER_URL/otlp/v1/traces);
// the token goes in the authorization header (or set OTEL_EXPORTER_OTLP_HEADERS yourself).
// Prints {trace_id}.
import { SpanStatusCode, trace } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, NodeTracerProvider } from '@opentelemetry/sdk-trace-node';

const baseUrl = process.env.LEDGER_URL ?? 'http://127.0.0.1:3000';
const url = process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? `${baseUrl}/otlp/v1/traces`;
const headers = process.env.LEDGER_TOKEN ? { authorization: `Bearer ${process.env.LEDGER_TOKEN}` } : undefined;

const provider = new NodeTracerProvider({
  resource: resourceFromAttributes({ 'service.name': 'support-service' }),
  spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url, headers }))],
});
provider.register();
const tracer = trace.getTracer('otel-agent-example');

const traceId = await tracer.startActiveSpan(
  'invoke_agent support-agent',
  { attributes: { 'gen_ai.operation.name': 'invoke_agent', 'gen_ai.agent.name': 'support-agent', 'gen_ai.conversation.id': `conv-${Date.now().toString(36)}` } },
  async (agent) => {
    tracer.startActiveSpan('chat gpt-4.1', { attributes: { 'gen_ai.operation.name': 'chat', 'gen_ai.provider.name': 'openai', 'gen_ai.request.model': 'gpt-4.1', 'gen_ai.usage.input_tokens': 380, 'gen_ai.usage.output_tokens': 41 } }, (chat) => {
      chat.setStatus({ code: SpanStatusCode.OK });
      chat.end();
    });
    tracer.startActiveSpan(
      'execute_tool lookup_order',
      { attributes: { 'gen_ai.operation.name': 'execute_tool', 'gen_ai.tool.name': 'lookup_order', 'gen_ai.tool.call.id': 'call_1', 'gen_ai.tool.call.arguments': '{"order_id":"A-1009"}' } },
      (tool) => {
        tool.setAttribute('gen_ai.tool.call.result', '{"status":"delivered"}');
        tool.end();
      },
    );
    agent.end();
    return agent.spanContext().traceId;
  },
);

await provider.shutdown(); // exports what is batched
console.log(JSON.stringify({ trace_id: traceId }));
