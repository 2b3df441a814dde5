import type * as Effect from "effect/Effect"
import type * as Redacted from "effect/Redacted"
import type { Prompt } from "./protocol/auth/client.js"
import type { SshCertificate } from "./protocol/keys/certificateEncoding.js"
import { KeyError } from "./protocol/keys/errors.js"
import { equalBytes } from "./protocol/keys/keyEncoding.js"
import type { SshPrivateKey } from "./protocol/keys/privateKey.js"
import type { SshPublicKey } from "./protocol/keys/publicKey.js"

/** A keyboard-interactive round, as the server sent it. */
export interface InfoRequest {
  readonly name: string
  readonly instructions: string
  readonly prompts: ReadonlyArray<Prompt>
}

/** Anything that holds keys and signs with them: the OpenSSH agent, Pageant, an in-memory agent. */
export interface AgentSigner {
  identities(): Promise<ReadonlyArray<{ readonly publicKey: SshPublicKey; readonly comment: string }>>
  sign(publicKeyBlob: Uint8Array, data: Uint8Array, algorithm?: string): Promise<Uint8Array>
}

export type SshAuthMethod =
  | { readonly _tag: "None" }
  | {
      readonly _tag: "Password"
      readonly password: Redacted.Redacted<string>
      /** Called when the server demands a new password (RFC 4252 §8); without it the method fails. */
      readonly onPasswordChange?: (prompt: string) => Effect.Effect<Redacted.Redacted<string>>
    }
  | {
      readonly _tag: "PrivateKey"
      readonly key: SshPrivateKey
      /** An OpenSSH user certificate for the key: offered instead of the bare public key. */
      readonly certificate?: SshCertificate
    }
  | { readonly _tag: "Agent"; readonly agent: AgentSigner | string }
  | { readonly _tag: "KeyboardInteractive"; readonly respond: (request: InfoRequest) => Effect.Effect<ReadonlyArray<string>> }
  | {
      readonly _tag: "Hostbased"
      readonly key: SshPrivateKey
      readonly hostname: string
      readonly localUsername: string
    }

/** The "none" method: succeeds only on servers that need no authentication. */
export const none: SshAuthMethod = { _tag: "None" }

/**
 * Password authentication.
 * @example SshAuth.password(Redacted.make(process.env.SSH_PASSWORD!))
 */
export const password = (
  password: Redacted.Redacted<string>,
  onPasswordChange?: (prompt: string) => Effect.Effect<Redacted.Redacted<string>>
): SshAuthMethod => ({ _tag: "Password", password, ...(onPasswordChange ? { onPasswordChange } : {}) })

/**
 * Public key authentication with a parsed private key (see `SshKey.parsePrivateKey`), optionally
 * with a user certificate for it (see `certificate`).
 */
export const privateKey = (key: SshPrivateKey, options: { readonly certificate?: SshCertificate | SshPublicKey } = {}): SshAuthMethod =>
  options.certificate === undefined ? { _tag: "PrivateKey", key } : certificate(key, options.certificate)

/**
 * Public key authentication with an OpenSSH user certificate (`id_ed25519-cert.pub`, parsed with
 * `SshKey.parsePublicKey`, or made by `SshKey.signCertificate`): the server checks the CA
 * signature, principals and validity, then the signature of `key`. Throws KeyError when the
 * certificate certifies another key.
 * @example SshAuth.certificate(key, SshKey.parsePublicKey(readFileSync("id_ed25519-cert.pub")))
 */
export const certificate = (key: SshPrivateKey, cert: SshCertificate | SshPublicKey): SshAuthMethod => {
  const c = "signatureKey" in cert ? cert : cert.certificate
  if (c === undefined) throw new KeyError("unsupported-key-type", `${cert.type} is a plain public key, not a certificate`)
  if (!equalBytes(c.publicKey, key.publicKey.blob)) throw new KeyError("corrupt", "the certificate certifies another key than the private key given")
  return { _tag: "PrivateKey", key, certificate: c }
}

/** Public key authentication through an agent: a socket path (SSH_AUTH_SOCK) or an agent object. */
export const agent = (agent: AgentSigner | string): SshAuthMethod => ({ _tag: "Agent", agent })

/** keyboard-interactive (RFC 4256): `respond` answers each round of prompts. */
export const keyboardInteractive = (respond: (request: InfoRequest) => Effect.Effect<ReadonlyArray<string>>): SshAuthMethod => ({
  _tag: "KeyboardInteractive",
  respond
})

/** Host-based authentication with the client host's key. */
export const hostbased = (key: SshPrivateKey, hostname: string, localUsername: string): SshAuthMethod => ({
  _tag: "Hostbased",
  key,
  hostname,
  localUsername
})

/** The RFC 4252 method name of a method. */
export function methodName(m: SshAuthMethod): string {
  switch (m._tag) {
    case "None":
      return "none"
    case "Password":
      return "password"
    case "PrivateKey":
    case "Agent":
      return "publickey"
    case "KeyboardInteractive":
      return "keyboard-interactive"
    case "Hostbased":
      return "hostbased"
  }
}
