import { describe, expect, it } from "vitest"
import {
  AgentFrameDecoder,
  AgentMessage,
  decodeAgentRequest,
  decodeAgentResponse,
  encodeAgentRequest,
  encodeAgentResponse,
  MAX_AGENT_MESSAGE,
  signFlagsForAlgorithm
} from "../../src/protocol/agent/codec.js"
import { AgentError, type AgentErrorReason } from "../../src/protocol/agent/errors.js"
import { SshWriter } from "../../src/protocol/wire/writer.js"

const bytes = (...v: Array<number>) => Uint8Array.from(v)
const payloadOf = (frame: Uint8Array) => frame.subarray(4)

function agentReason(f: () => unknown): AgentErrorReason {
  try {
    f()
  } catch (e) {
    if (e instanceof AgentError) return e.reason
    throw new Error(`expected an AgentError, got ${String(e)}`)
  }
  throw new Error("expected an AgentError, nothing was thrown")
}

describe("ssh-agent codec", () => {
  it("frames a sign request as draft-miller-ssh-agent §3.6 lays it out", () => {
    const frame = encodeAgentRequest({ type: "sign", publicKeyBlob: bytes(1, 2), data: bytes(3), flags: 4 })
    expect([...frame]).toEqual([0, 0, 0, 16, 13, 0, 0, 0, 2, 1, 2, 0, 0, 0, 1, 3, 0, 0, 0, 4])
    expect([...encodeAgentRequest({ type: "request-identities" })]).toEqual([0, 0, 0, 1, 11])
  })

  it("round-trips requests and responses", () => {
    const sign = { type: "sign", publicKeyBlob: bytes(9, 9), data: bytes(1, 2, 3), flags: 2 } as const
    expect(decodeAgentRequest(payloadOf(encodeAgentRequest(sign)))).toEqual(sign)
    expect(decodeAgentRequest(payloadOf(encodeAgentRequest({ type: "request-identities" })))).toEqual({ type: "request-identities" })
    expect(decodeAgentRequest(bytes(AgentMessage.LOCK, 0, 0, 0, 0))).toEqual({ type: "other", messageType: 22, body: bytes(0, 0, 0, 0) })

    const identities = {
      type: "identities",
      identities: [
        { publicKeyBlob: bytes(1), comment: "a" },
        { publicKeyBlob: bytes(2, 3), comment: "bé" }
      ]
    } as const
    expect(decodeAgentResponse(payloadOf(encodeAgentResponse(identities)))).toEqual(identities)
    const signature = { type: "signature", signatureBlob: bytes(7, 7, 7) } as const
    expect(decodeAgentResponse(payloadOf(encodeAgentResponse(signature)))).toEqual(signature)
    expect(decodeAgentResponse(payloadOf(encodeAgentResponse({ type: "failure" })))).toEqual({ type: "failure" })
    expect(decodeAgentResponse(payloadOf(encodeAgentResponse({ type: "success" })))).toEqual({ type: "success" })
    expect(decodeAgentResponse(bytes(AgentMessage.EXTENSION_FAILURE))).toEqual({ type: "failure" })
  })

  it("maps signature algorithms to SIGN_REQUEST flags", () => {
    expect(signFlagsForAlgorithm("rsa-sha2-256")).toBe(2)
    expect(signFlagsForAlgorithm("rsa-sha2-512")).toBe(4)
    expect(signFlagsForAlgorithm("ssh-rsa")).toBe(0)
    expect(signFlagsForAlgorithm(undefined)).toBe(0)
  })

  it("reassembles frames split anywhere and several in one chunk", () => {
    const frames = [
      encodeAgentResponse({ type: "signature", signatureBlob: new Uint8Array(300).fill(5) }),
      encodeAgentResponse({ type: "failure" }),
      encodeAgentResponse({ type: "identities", identities: [] })
    ]
    const stream = Uint8Array.from(frames.flatMap((f) => [...f]))
    for (const size of [1, 3, 7, 64, stream.length]) {
      const decoder = new AgentFrameDecoder()
      const out: Array<string> = []
      for (let i = 0; i < stream.length; i += size) {
        decoder.push(stream.slice(i, i + size))
        for (let p = decoder.next(); p !== undefined; p = decoder.next()) out.push(decodeAgentResponse(p).type)
      }
      expect(out).toEqual(["signature", "failure", "identities"])
    }
  })

  it("refuses oversized and empty frames before buffering them", () => {
    const decoder = new AgentFrameDecoder()
    decoder.push(new SshWriter().uint32(MAX_AGENT_MESSAGE + 1).finish())
    expect(agentReason(() => decoder.next())).toBe("frame-too-large")
    const empty = new AgentFrameDecoder()
    empty.push(bytes(0, 0, 0, 0))
    expect(agentReason(() => empty.next())).toBe("malformed")
    const big = new Uint8Array(MAX_AGENT_MESSAGE)
    expect(agentReason(() => encodeAgentRequest({ type: "sign", publicKeyBlob: big, data: big, flags: 0 }))).toBe("frame-too-large")
  })

  it("refuses truncated, padded and unknown messages with typed errors", () => {
    const answer = payloadOf(encodeAgentResponse({ type: "identities", identities: [{ publicKeyBlob: bytes(1, 2, 3), comment: "c" }] }))
    for (let n = 0; n < answer.length; n++) expect(agentReason(() => decodeAgentResponse(answer.subarray(0, n)))).toBe("malformed")
    expect(agentReason(() => decodeAgentResponse(Uint8Array.from([...answer, 0])))).toBe("malformed")
    // a count of 4 billion identities with nothing behind it
    expect(agentReason(() => decodeAgentResponse(bytes(12, 0xff, 0xff, 0xff, 0xff)))).toBe("malformed")
    expect(agentReason(() => decodeAgentResponse(bytes(99)))).toBe("unexpected-response")
    const sign = payloadOf(encodeAgentRequest({ type: "sign", publicKeyBlob: bytes(1), data: bytes(2), flags: 0 }))
    for (let n = 0; n < sign.length; n++) expect(agentReason(() => decodeAgentRequest(sign.subarray(0, n)))).toBe("malformed")
  })
})
