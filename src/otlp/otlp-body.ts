import { createGunzip } from 'node:zlib';
import type { FastifyInstance } from 'fastify';
import { OtlpError } from './otlp.errors';

/** Routes whose bodies may be protobuf and gzip-compressed. */
export const OTLP_PATH_PREFIX = '/otlp/';
export const PROTOBUF = 'application/x-protobuf';

const isOtlp = (url: string) => url.startsWith(OTLP_PATH_PREFIX);

/**
 * Body handling for OTLP/HTTP, limited to /otlp/ routes: a raw-Buffer parser
 * for application/x-protobuf, and gzip request bodies decompressed before
 * parsing. Fastify's body limit applies to the decompressed bytes (its
 * zip-bomb guard reads `receivedEncodedLength`), so a small gzip body that
 * inflates past the limit is a 413 like any other.
 */
export function registerOtlpBodyParsing(fastify: FastifyInstance): void {
  fastify.addContentTypeParser(PROTOBUF, { parseAs: 'buffer' }, (request, body, done) => {
    // elsewhere protobuf stays what it was: an unsupported media type
    if (!isOtlp(request.url)) done(Object.assign(new Error('this route accepts application/json'), { statusCode: 415 }), undefined);
    else done(null, body);
  });
  fastify.addHook('preParsing', async (request, _reply, payload) => {
    const encoding = request.headers['content-encoding'];
    if (!encoding || encoding === 'identity' || !isOtlp(request.url)) return payload;
    if (encoding !== 'gzip') throw Object.assign(OtlpError.unsupportedEncoding(encoding), { statusCode: 415 });
    const gunzip = createGunzip() as ReturnType<typeof createGunzip> & { receivedEncodedLength: number };
    gunzip.receivedEncodedLength = 0;
    payload.on('data', (chunk: Buffer) => {
      gunzip.receivedEncodedLength += chunk.length;
    });
    payload.on('error', (err) => gunzip.destroy(err));
    return payload.pipe(gunzip);
  });
}
