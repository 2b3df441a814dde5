import { DisconnectReason, ProtocolError } from "../wire/errors.js"
import { Msg } from "../wire/messages.js"
import { SshReader } from "../wire/reader.js"
import { message } from "../wire/writer.js"
import type { SshWriter } from "../wire/writer.js"
import { CONNECTION_SERVICE, hostbasedSignedData, publicKeySignedData, USERAUTH_SERVICE } from "./messages.js"

export interface Prompt {
  readonly prompt: string
  readonly echo: boolean
}

export type ClientAuthEvent =
  | { readonly _tag: "ServiceAccepted" }
  | { readonly _tag: "Banner"; readonly message: string; readonly language: string }
  | { readonly _tag: "Failure"; readonly methods: ReadonlyArray<string>; readonly partialSuccess: boolean }
  | { readonly _tag: "Success" }
  /** The server would accept a signature from this key (answer to a publickey query). */
  | { readonly _tag: "PublicKeyOk"; readonly algorithm: string; readonly key: Uint8Array }
  | { readonly _tag: "PasswordChangeRequest"; readonly prompt: string; readonly language: string }
  | {
      readonly _tag: "InfoRequest"
      readonly name: string
      readonly instructions: string
      readonly language: string
      readonly prompts: ReadonlyArray<Prompt>
    }

type Pending = "none" | "password" | "publickey-query" | "publickey" | "keyboard-interactive" | "hostbased" | undefined

/** Most prompts a keyboard-interactive round may carry; more is a hostile server. */
const MAX_PROMPTS = 64

/**
 * The client side of RFC 4252 user authentication. It builds requests and parses the
 * server's answers; which method to try next is the caller's policy.
 */
export class ClientAuth {
  private pending: Pending
  private done = false

  constructor(
    private readonly send: (payload: Uint8Array) => void,
    private readonly sessionId: Uint8Array
  ) {}

  get authenticated(): boolean {
    return this.done
  }

  requestService(): void {
    this.send(message((w) => w.byte(Msg.SERVICE_REQUEST).string(USERAUTH_SERVICE)))
  }

  none(username: string): void {
    this.request(username, "none", "none", () => {})
  }

  password(username: string, password: string): void {
    this.request(username, "password", "password", (w) => w.bool(false).string(password))
  }

  /** Answers a PasswordChangeRequest with the old and the new password. */
  changePassword(username: string, oldPassword: string, newPassword: string): void {
    this.request(username, "password", "password", (w) => w.bool(true).string(oldPassword).string(newPassword))
  }

  /** Asks whether the server would accept this key, without signing (RFC 4252 §7). */
  publicKeyQuery(username: string, algorithm: string, key: Uint8Array): void {
    this.request(username, "publickey", "publickey-query", (w) => w.bool(false).string(algorithm).string(key))
  }

  /** The bytes a publickey signature for `username` must cover. */
  publicKeySignedData(username: string, algorithm: string, key: Uint8Array): Uint8Array {
    return publicKeySignedData(this.sessionId, username, CONNECTION_SERVICE, algorithm, key)
  }

  publicKey(username: string, algorithm: string, key: Uint8Array, signature: Uint8Array): void {
    this.request(username, "publickey", "publickey", (w) => w.bool(true).string(algorithm).string(key).string(signature))
  }

  keyboardInteractive(username: string, submethods = ""): void {
    this.request(username, "keyboard-interactive", "keyboard-interactive", (w) => w.string("").string(submethods))
  }

  infoResponse(answers: ReadonlyArray<string>): void {
    this.send(
      message((w) => {
        w.byte(Msg.USERAUTH_INFO_RESPONSE).uint32(answers.length)
        for (const a of answers) w.string(a)
      })
    )
  }

  hostbasedSignedData(username: string, algorithm: string, hostKey: Uint8Array, hostname: string, localUsername: string): Uint8Array {
    return hostbasedSignedData(this.sessionId, username, CONNECTION_SERVICE, algorithm, hostKey, hostname, localUsername)
  }

  hostbased(
    username: string,
    algorithm: string,
    hostKey: Uint8Array,
    hostname: string,
    localUsername: string,
    signature: Uint8Array
  ): void {
    this.request(username, "hostbased", "hostbased", (w) =>
      w.string(algorithm).string(hostKey).string(hostname).string(localUsername).string(signature)
    )
  }

  private request(
    username: string,
    method: string,
    pending: Pending,
    body: (w: SshWriter) => unknown
  ): void {
    this.pending = pending
    this.send(
      message((w) => {
        w.byte(Msg.USERAUTH_REQUEST).string(username).string(CONNECTION_SERVICE).string(method)
        body(w)
      })
    )
  }

  /** Parses an auth-layer message (5–79). Throws ProtocolError on anything out of place. */
  handle(payload: Uint8Array): ClientAuthEvent {
    const r = new SshReader(payload, 1)
    switch (payload[0]) {
      case Msg.SERVICE_ACCEPT:
        if (r.ascii() !== USERAUTH_SERVICE) throw new ProtocolError("protocol", "server accepted a service we did not ask for")
        return { _tag: "ServiceAccepted" }
      case Msg.USERAUTH_BANNER: {
        const text = r.utf8()
        return { _tag: "Banner", message: text, language: r.remaining > 0 ? r.ascii() : "" }
      }
      case Msg.USERAUTH_FAILURE: {
        const methods = r.nameList()
        const partialSuccess = r.bool()
        this.pending = undefined
        return { _tag: "Failure", methods, partialSuccess }
      }
      case Msg.USERAUTH_SUCCESS:
        this.pending = undefined
        this.done = true
        return { _tag: "Success" }
      case 60:
        return this.handle60(r)
      case Msg.USERAUTH_INFO_RESPONSE:
      default:
        throw new ProtocolError("protocol", `unexpected authentication message ${payload[0]}`, DisconnectReason.PROTOCOL_ERROR)
    }
  }

  /** Message 60 means different things depending on the method in flight. */
  private handle60(r: SshReader): ClientAuthEvent {
    switch (this.pending) {
      case "publickey-query": {
        const algorithm = r.ascii()
        return { _tag: "PublicKeyOk", algorithm, key: r.string() }
      }
      case "password": {
        const prompt = r.utf8()
        return { _tag: "PasswordChangeRequest", prompt, language: r.remaining > 0 ? r.ascii() : "" }
      }
      case "keyboard-interactive": {
        const name = r.utf8()
        const instructions = r.utf8()
        const language = r.ascii()
        const count = r.uint32()
        if (count > MAX_PROMPTS) throw new ProtocolError("protocol", `keyboard-interactive request with ${count} prompts`)
        const prompts: Prompt[] = []
        for (let i = 0; i < count; i++) prompts.push({ prompt: r.utf8(), echo: r.bool() })
        return { _tag: "InfoRequest", name, instructions, language, prompts }
      }
      default:
        throw new ProtocolError("protocol", `authentication message 60 while no method expects it`)
    }
  }
}
