import { ProblemError } from '../common/problem';

export enum KeysErrorCode {
  UnsupportedKey = 'unsupported_key',
  PrivateKey = 'private_key_refused',
  KidTaken = 'kid_taken',
}

export class KeysError extends ProblemError {
  static unsupported(detail: string): KeysError {
    return new KeysError(400, KeysErrorCode.UnsupportedKey, 'Unsupported key', detail, [{ field: 'jwk', message: detail }]);
  }

  static privateKey(): KeysError {
    return new KeysError(
      400,
      KeysErrorCode.PrivateKey,
      'Private key refused',
      'the JWK contains private key material ("d"); register the public key only and keep the private key with the producer',
      [{ field: 'jwk.d', message: 'private key material is refused' }],
    );
  }

  static kidTaken(kid: string): KeysError {
    return new KeysError(409, KeysErrorCode.KidTaken, 'Key id taken', `kid "${kid}" is already registered with another key`);
  }
}
