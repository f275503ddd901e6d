import { Usage, withGenerationSpan, type Model, type ModelRequest, type ModelResponse } from '@openai/agents';

/**
 * A `Model` for the real @openai/agents runner without a network: the first
 * turn calls the given tool with the given arguments, the turn after the
 * tool's output answers with text. Like a provider's model it records a
 * generation span with its model name and token usage.
 */
export class ScriptedModel implements Model {
  calls = 0;

  constructor(
    private readonly tool: string,
    private readonly args: Record<string, unknown>,
    private readonly answer = 'Done.',
  ) {}

  async getResponse(request: ModelRequest): Promise<ModelResponse> {
    this.calls++;
    const input = Array.isArray(request.input) ? request.input : [];
    const toolDone = input.some((i) => (i as { type?: string }).type === 'function_call_result');
    return withGenerationSpan(
      async (span) => {
        span.spanData.usage = { input_tokens: 50, output_tokens: 10 };
        const output: ModelResponse['output'] = toolDone
          ? [{ type: 'message', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: this.answer }] }]
          : [{ type: 'function_call', callId: `call_${this.calls}_${this.tool}`, name: this.tool, arguments: JSON.stringify(this.args), status: 'completed' }];
        return { usage: new Usage({ requests: 1, inputTokens: 50, outputTokens: 10, totalTokens: 60 }), output };
      },
      { data: { model: 'scripted-1' } },
    );
  }

  async *getStreamedResponse(): AsyncIterable<never> {
    throw new Error('the scripted model does not stream');
  }
}
