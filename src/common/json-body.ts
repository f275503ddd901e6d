import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import type { RawServerDefault } from 'fastify';
import { parse as secureJsonParse } from 'secure-json-parse';
import { ProblemError } from './problem';

const malformed = (detail: string) => new ProblemError(400, 'malformed_body', 'Malformed body', detail);

/** What JSON.parse found wrong, without the excerpt of the input its message may quote. */
function syntaxHint(message: string): string {
  const expected = /^(Expected .*?) in JSON at position (\d+)/.exec(message);
  if (expected) return ` (${expected[1].charAt(0).toLowerCase()}${expected[1].slice(1)}, at position ${expected[2]})`;
  const token = /^Unexpected token '(.{1,2})'/u.exec(message);
  if (token) return ` (unexpected ${JSON.stringify(token[1])})`;
  if (message.includes('end of JSON')) return ' (it ends too early)';
  return '';
}

/**
 * application/json bodies, parsed as Fastify's own parser does (the same
 * secure-json-parse, refusing `__proto__` and `constructor.prototype` keys
 * anywhere: prototype poisoning), but refused with a problem that says why.
 * Fastify's parser answers "not valid JSON" for all three cases.
 */
export function registerJsonBody(app: NestFastifyApplication, bodyLimit: number): void {
  app.useBodyParser<RawServerDefault>('application/json', { bodyLimit }, (_request, body, done) => {
    if (body.length === 0) {
      done(malformed('the body is empty; send a JSON object'), undefined);
      return;
    }
    try {
      done(null, secureJsonParse(body, undefined, { protoAction: 'error', constructorAction: 'error' }));
    } catch (err) {
      const message = (err as Error).message;
      if (/forbidden (prototype|constructor) property/.test(message)) {
        done(malformed('the body holds a "__proto__" or "constructor": {"prototype": …} key, which is refused (prototype poisoning)'), undefined);
      } else {
        done(malformed(`the body is not valid JSON${syntaxHint(message)}`), undefined);
      }
    }
  });
}
