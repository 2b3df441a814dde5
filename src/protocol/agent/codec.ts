/**
 * The ssh-agent protocol (draft-miller-ssh-agent, now RFC 9987; PROTOCOL.agent): framing and the
 * identity listing and signing messages, in both directions so that clients and agents share it.
 * Every message is `uint32 length || byte type || contents`.
 */
import { SshReader } from "../wire/reader.js"
import { SshWriter } from "../wire/writer.js"
import { AgentError } from "./errors.js"

export const AgentMessage = {
  FAILURE: 5,
  SUCCESS: 6,
  REQUEST_IDENTITIES: 11,
  IDENTITIES_ANSWER: 12,
  SIGN_REQUEST: 13,
  SIGN_RESPONSE: 14,
  ADD_IDENTITY: 17,
  REMOVE_IDENTITY: 18,
  REMOVE_ALL_IDENTITIES: 19,
  LOCK: 22,
  UNLOCK: 23,
  ADD_ID_CONSTRAINED: 25,
  EXTENSION: 27,
  EXTENSION_FAILURE: 28
} as const

/** SIGN_REQUEST flags that pick the RSA signature algorithm (RFC 8332 §3.2). */
export const AgentSignFlags = { RSA_SHA2_256: 2, RSA_SHA2_512: 4 } as const

/** OpenSSH's agent refuses messages over 256 KiB (AGENT_MAX_LEN); so do we, both ways. */
export const MAX_AGENT_MESSAGE = 256 * 1024

export interface AgentIdentity {
  readonly publicKeyBlob: Uint8Array
  readonly comment: string
}

export type AgentRequest =
  | { readonly type: "request-identities" }
  | { readonly type: "sign"; readonly publicKeyBlob: Uint8Array; readonly data: Uint8Array; readonly flags: number }
  /** Any other request, kept whole so an agent can answer FAILURE to what it does not support. */
  | { readonly type: "other"; readonly messageType: number; readonly body: Uint8Array }

export type AgentResponse =
  | { readonly type: "identities"; readonly identities: ReadonlyArray<AgentIdentity> }
  | { readonly type: "signature"; readonly signatureBlob: Uint8Array }
  | { readonly type: "failure" }
  | { readonly type: "success" }

/** The SIGN_REQUEST flags for a signature algorithm: rsa-sha2-256 → 2, rsa-sha2-512 → 4, others 0. */
export function signFlagsForAlgorithm(algorithm: string | undefined): number {
  if (algorithm === "rsa-sha2-256") return AgentSignFlags.RSA_SHA2_256
  if (algorithm === "rsa-sha2-512") return AgentSignFlags.RSA_SHA2_512
  return 0
}

function frame(build: (w: SshWriter) => unknown): Uint8Array {
  const w = new SshWriter(256).uint32(0)
  build(w)
  const bytes = w.finish()
  const length = bytes.length - 4
  if (length > MAX_AGENT_MESSAGE) throw new AgentError("frame-too-large", `agent message of ${length} bytes exceeds ${MAX_AGENT_MESSAGE}`)
  new DataView(bytes.buffer, bytes.byteOffset).setUint32(0, length)
  return bytes
}

/** A request as a framed message, ready to write to the agent. */
export function encodeAgentRequest(request: AgentRequest): Uint8Array {
  switch (request.type) {
    case "request-identities":
      return frame((w) => w.byte(AgentMessage.REQUEST_IDENTITIES))
    case "sign":
      return frame((w) => w.byte(AgentMessage.SIGN_REQUEST).string(request.publicKeyBlob).string(request.data).uint32(request.flags))
    case "other":
      return frame((w) => w.byte(request.messageType).raw(request.body))
  }
}

/** A response as a framed message, ready to write to the client. */
export function encodeAgentResponse(response: AgentResponse): Uint8Array {
  switch (response.type) {
    case "identities":
      return frame((w) => {
        w.byte(AgentMessage.IDENTITIES_ANSWER).uint32(response.identities.length)
        for (const id of response.identities) w.string(id.publicKeyBlob).string(id.comment)
      })
    case "signature":
      return frame((w) => w.byte(AgentMessage.SIGN_RESPONSE).string(response.signatureBlob))
    case "failure":
      return frame((w) => w.byte(AgentMessage.FAILURE))
    case "success":
      return frame((w) => w.byte(AgentMessage.SUCCESS))
  }
}

/** Comments are free text; one in another encoding must not fail the whole listing. */
const commentDecoder = new TextDecoder()

function decoding<A>(what: string, payload: Uint8Array, decode: (r: SshReader, type: number) => A): A {
  try {
    const r = new SshReader(payload)
    const value = decode(r, r.byte())
    r.end()
    return value
  } catch (e) {
    if (e instanceof AgentError) throw e
    throw new AgentError("malformed", `malformed agent ${what}: ${e instanceof Error ? e.message : String(e)}`)
  }
}

/** Decodes a request payload (a frame without its length). */
export function decodeAgentRequest(payload: Uint8Array): AgentRequest {
  return decoding("request", payload, (r, type) => {
    switch (type) {
      case AgentMessage.REQUEST_IDENTITIES:
        return { type: "request-identities" }
      case AgentMessage.SIGN_REQUEST: {
        const publicKeyBlob = r.string()
        const data = r.string()
        return { type: "sign", publicKeyBlob, data, flags: r.uint32() }
      }
      default:
        return { type: "other", messageType: type, body: r.rest() }
    }
  })
}

/** Decodes a response payload (a frame without its length). */
export function decodeAgentResponse(payload: Uint8Array): AgentResponse {
  return decoding("response", payload, (r, type): AgentResponse => {
    switch (type) {
      case AgentMessage.IDENTITIES_ANSWER: {
        const count = r.uint32()
        const identities: Array<AgentIdentity> = []
        // each entry takes at least 8 bytes, so a lying count runs out of input instead of memory
        for (let i = 0; i < count; i++) identities.push({ publicKeyBlob: r.string(), comment: commentDecoder.decode(r.string()) })
        return { type: "identities", identities }
      }
      case AgentMessage.SIGN_RESPONSE:
        return { type: "signature", signatureBlob: r.string() }
      // some agents answer EXTENSION_FAILURE where FAILURE is meant
      case AgentMessage.FAILURE:
      case AgentMessage.EXTENSION_FAILURE:
        return { type: "failure" }
      case AgentMessage.SUCCESS:
        return { type: "success" }
      default:
        throw new AgentError("unexpected-response", `unexpected agent message type ${type}`)
    }
  })
}

/**
 * Splits a byte stream into message payloads. Lengths above MAX_AGENT_MESSAGE are refused
 * before anything is buffered for them. Pushed chunks are kept, not copied, until consumed.
 */
export class AgentFrameDecoder {
  private buffer: Uint8Array = new Uint8Array(0)

  push(bytes: Uint8Array): void {
    if (this.buffer.length === 0) {
      this.buffer = bytes
      return
    }
    const joined = new Uint8Array(this.buffer.length + bytes.length)
    joined.set(this.buffer)
    joined.set(bytes, this.buffer.length)
    this.buffer = joined
  }

  /** The next complete payload, or undefined until more bytes arrive. */
  next(): Uint8Array | undefined {
    if (this.buffer.length < 4) return undefined
    const length = new DataView(this.buffer.buffer, this.buffer.byteOffset).getUint32(0)
    if (length > MAX_AGENT_MESSAGE) {
      throw new AgentError("frame-too-large", `agent message length ${length} exceeds ${MAX_AGENT_MESSAGE}`)
    }
    if (length === 0) throw new AgentError("malformed", "empty agent message")
    if (this.buffer.length < 4 + length) return undefined
    const payload = this.buffer.subarray(4, 4 + length)
    this.buffer = this.buffer.subarray(4 + length)
    return payload
  }
}
