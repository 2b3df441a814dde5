import { verifySignature } from "../keys/publicKey.js"
import { DisconnectReason, ProtocolError } from "../wire/errors.js"
import { Msg } from "../wire/messages.js"
import { SshReader } from "../wire/reader.js"
import { message } from "../wire/writer.js"
import type { Prompt } from "./client.js"
import { CONNECTION_SERVICE, hostbasedSignedData, publicKeySignedData, USERAUTH_SERVICE } from "./messages.js"

/** One USERAUTH_REQUEST, decoded, with any signature already checked. */
export type AuthRequest =
  | { readonly method: "none"; readonly username: string }
  | { readonly method: "password"; readonly username: string; readonly password: string; readonly newPassword?: string }
  | {
      readonly method: "publickey"
      readonly username: string
      readonly algorithm: string
      readonly key: Uint8Array
      /** False for a query (no signature yet): answer with `publicKeyOk` to invite one. */
      readonly signed: boolean
      /** True only when a signature is present and verifies over this session's data. */
      readonly signatureValid: boolean
    }
  | { readonly method: "keyboard-interactive"; readonly username: string; readonly submethods: string }
  | {
      readonly method: "hostbased"
      readonly username: string
      readonly algorithm: string
      readonly hostKey: Uint8Array
      readonly hostname: string
      readonly localUsername: string
      readonly signatureValid: boolean
    }
  | { readonly method: string & {}; readonly username: string; readonly unknown: true }

export type ServerAuthEvent =
  | { readonly _tag: "Request"; readonly request: AuthRequest }
  | { readonly _tag: "InfoResponse"; readonly answers: ReadonlyArray<string> }

export interface ServerAuthLimits {
  /** Authentication attempts (requests other than `none` and publickey queries) before disconnecting; OpenSSH: 6. */
  readonly maxAuthTries: number
}

/**
 * The server side of RFC 4252. It decodes requests, verifies signatures against the
 * session id, counts attempts, and sends the answers the application decides on.
 */
export class ServerAuth {
  private serviceAccepted = false
  private failures = 0
  private done = false
  private awaitingInfo = false
  private awaitingAnswer = false
  private user: string | undefined

  constructor(
    private readonly send: (payload: Uint8Array) => void,
    private readonly sessionId: Uint8Array,
    private readonly limits: ServerAuthLimits = { maxAuthTries: 6 },
    /** Called right after USERAUTH_SUCCESS is sent: delayed compression starts there. */
    private readonly onAuthenticated: () => void = () => {}
  ) {}

  get authenticated(): boolean {
    return this.done
  }

  /**
   * True once nothing but `handleAfterSuccess` is left to do: authenticated through the
   * ssh-userauth service, with no keyboard-interactive round open. The owner may then drop this object.
   */
  get finished(): boolean {
    return this.done && this.serviceAccepted && !this.awaitingInfo
  }

  /**
   * What an authenticated server does with an authentication-layer message (RFC 4252 §5.1:
   * requests are ignored, the rest is a protocol error), without the ServerAuth it no longer needs.
   */
  static handleAfterSuccess(payload: Uint8Array): void {
    switch (payload[0]) {
      case Msg.SERVICE_REQUEST:
        throw new ProtocolError("protocol", `service ${new SshReader(payload, 1).ascii()} not available`, DisconnectReason.SERVICE_NOT_AVAILABLE)
      case Msg.USERAUTH_REQUEST:
        return
      case Msg.USERAUTH_INFO_RESPONSE:
        throw new ProtocolError("protocol", "INFO_RESPONSE without an INFO_REQUEST")
      default:
        throw new ProtocolError("protocol", `unexpected message ${payload[0]} during authentication`)
    }
  }
  get username(): string | undefined {
    return this.user
  }

  /**
   * Handles SERVICE_REQUEST, USERAUTH_REQUEST and INFO_RESPONSE. Returns an event the
   * application must answer (accept/reject/...), or undefined when handled here.
   */
  handle(payload: Uint8Array): ServerAuthEvent | undefined {
    if (this.finished) {
      ServerAuth.handleAfterSuccess(payload)
      return undefined
    }
    const r = new SshReader(payload, 1)
    switch (payload[0]) {
      case Msg.SERVICE_REQUEST: {
        const service = r.ascii()
        if (service !== USERAUTH_SERVICE || this.serviceAccepted) {
          throw new ProtocolError("protocol", `service ${service} not available`, DisconnectReason.SERVICE_NOT_AVAILABLE)
        }
        this.serviceAccepted = true
        this.send(message((w) => w.byte(Msg.SERVICE_ACCEPT).string(USERAUTH_SERVICE)))
        return undefined
      }
      case Msg.USERAUTH_REQUEST:
        if (!this.serviceAccepted) throw new ProtocolError("protocol", "USERAUTH_REQUEST before the ssh-userauth service")
        if (this.done) return undefined // RFC 4252 §5.1: ignore requests after success
        if (this.awaitingAnswer) throw new ProtocolError("protocol", "a new authentication request before the last was answered")
        return { _tag: "Request", request: this.decodeRequest(r) }
      case Msg.USERAUTH_INFO_RESPONSE: {
        if (!this.awaitingInfo) throw new ProtocolError("protocol", "INFO_RESPONSE without an INFO_REQUEST")
        this.awaitingInfo = false
        const count = r.uint32()
        if (count > 64) throw new ProtocolError("protocol", `INFO_RESPONSE with ${count} answers`)
        const answers: string[] = []
        for (let i = 0; i < count; i++) answers.push(r.utf8())
        this.awaitingAnswer = true
        return { _tag: "InfoResponse", answers }
      }
      default:
        throw new ProtocolError("protocol", `unexpected message ${payload[0]} during authentication`)
    }
  }

  private decodeRequest(r: SshReader): AuthRequest {
    const username = r.utf8()
    const service = r.ascii()
    const method = r.ascii()
    if (service !== CONNECTION_SERVICE) {
      throw new ProtocolError("protocol", `authentication for unknown service ${service}`, DisconnectReason.SERVICE_NOT_AVAILABLE)
    }
    if (this.user !== undefined && this.user !== username) {
      // OpenSSH refuses a change of user name within one connection
      throw new ProtocolError("protocol", "user name changed during authentication", DisconnectReason.ILLEGAL_USER_NAME)
    }
    this.user = username
    this.awaitingAnswer = true
    switch (method) {
      case "none":
        return { method, username }
      case "password": {
        const change = r.bool()
        const password = r.utf8()
        return change ? { method, username, password, newPassword: r.utf8() } : { method, username, password }
      }
      case "publickey": {
        const signed = r.bool()
        const algorithm = r.ascii()
        const key = r.string()
        if (!signed) return { method, username, algorithm, key, signed, signatureValid: false }
        const signature = r.string()
        const data = publicKeySignedData(this.sessionId, username, service, algorithm, key)
        return { method, username, algorithm, key, signed, signatureValid: safeVerify(key, signature, data, algorithm) }
      }
      case "keyboard-interactive": {
        r.ascii() // language tag, deprecated
        return { method, username, submethods: r.utf8() }
      }
      case "hostbased": {
        const algorithm = r.ascii()
        const hostKey = r.string()
        const hostname = r.utf8()
        const localUsername = r.utf8()
        const signature = r.string()
        const data = hostbasedSignedData(this.sessionId, username, service, algorithm, hostKey, hostname, localUsername)
        return {
          method,
          username,
          algorithm,
          hostKey,
          hostname,
          localUsername,
          signatureValid: safeVerify(hostKey, signature, data, algorithm)
        }
      }
      default:
        return { method, username, unknown: true }
    }
  }

  /** Authentication complete. */
  accept(): void {
    this.awaitingAnswer = false
    this.done = true
    this.send(Uint8Array.of(Msg.USERAUTH_SUCCESS))
    this.onAuthenticated()
  }

  /**
   * Refuses the last request. `countsAsAttempt` is false for `none` and publickey queries,
   * as in OpenSSH. Past the limit the connection is closed with a ProtocolError.
   */
  reject(methodsLeft: ReadonlyArray<string>, partialSuccess = false, countsAsAttempt = true): void {
    this.awaitingAnswer = false
    this.awaitingInfo = false
    if (countsAsAttempt && !partialSuccess) this.failures++
    if (this.failures >= this.limits.maxAuthTries) {
      throw new ProtocolError(
        "protocol",
        `too many authentication failures (${this.failures})`,
        DisconnectReason.NO_MORE_AUTH_METHODS_AVAILABLE
      )
    }
    this.send(message((w) => w.byte(Msg.USERAUTH_FAILURE).nameList(methodsLeft).bool(partialSuccess)))
  }

  /** Invites the client to sign with the key it asked about. */
  publicKeyOk(algorithm: string, key: Uint8Array): void {
    this.awaitingAnswer = false
    this.send(message((w) => w.byte(Msg.USERAUTH_PK_OK).string(algorithm).string(key)))
  }

  passwordChangeRequest(prompt: string): void {
    this.awaitingAnswer = false
    this.send(message((w) => w.byte(Msg.USERAUTH_PASSWD_CHANGEREQ).string(prompt).string("")))
  }

  /** A keyboard-interactive round (RFC 4256 §3.2). */
  infoRequest(name: string, instructions: string, prompts: ReadonlyArray<Prompt>): void {
    this.awaitingAnswer = false
    this.awaitingInfo = true
    this.send(
      message((w) => {
        w.byte(Msg.USERAUTH_INFO_REQUEST).string(name).string(instructions).string("").uint32(prompts.length)
        for (const p of prompts) w.string(p.prompt).bool(p.echo)
      })
    )
  }

  banner(text: string): void {
    this.send(message((w) => w.byte(Msg.USERAUTH_BANNER).string(text).string("")))
  }
}

function safeVerify(key: Uint8Array, signature: Uint8Array, data: Uint8Array, algorithm: string): boolean {
  try {
    return verifySignature(key, signature, data, algorithm)
  } catch {
    return false
  }
}
