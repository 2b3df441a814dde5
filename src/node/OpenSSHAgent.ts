/**
 * A client for OpenSSH's ssh-agent over its unix socket ($SSH_AUTH_SOCK). One connection is
 * opened on first use and reused; requests are answered in order, so several may be in flight.
 * The socket does not keep the process alive while idle; `close()` ends it.
 */
import { createConnection, type Socket } from "node:net"
import { AgentFrameDecoder, decodeAgentResponse, encodeAgentRequest, signFlagsForAlgorithm, type AgentRequest, type AgentResponse } from "../protocol/agent/codec.js"
import { AgentError } from "../protocol/agent/errors.js"
import { KeyError } from "../protocol/keys/errors.js"
import { parsePublicKeyBlob, parseSignatureBlob, type SshPublicKey } from "../protocol/keys/publicKey.js"

interface Pending {
  readonly resolve: (response: AgentResponse) => void
  readonly reject: (error: Error) => void
}

export class OpenSSHAgentClient {
  private socket: Socket | undefined
  private decoder = new AgentFrameDecoder()
  private readonly pending: Array<Pending> = []
  private closed = false

  constructor(readonly socketPath: string) {}

  /**
   * The keys the agent holds. Keys of types this library does not know yet are left out rather
   * than failing the whole listing.
   */
  async identities(): Promise<ReadonlyArray<{ publicKey: SshPublicKey; comment: string }>> {
    const response = await this.request({ type: "request-identities" })
    if (response.type !== "identities") throw this.unexpected(response, "an identities answer")
    const out: Array<{ publicKey: SshPublicKey; comment: string }> = []
    for (const id of response.identities) {
      try {
        out.push({ publicKey: parsePublicKeyBlob(id.publicKeyBlob, id.comment), comment: id.comment })
      } catch (e) {
        if (!(e instanceof KeyError && e.reason === "unsupported-key-type")) {
          throw new AgentError("malformed", `the agent listed a malformed key: ${(e as Error).message}`)
        }
      }
    }
    return out
  }

  /**
   * Asks the agent to sign `data` with the key whose blob is given, and returns the signature
   * blob. `algorithm` picks rsa-sha2-256 / rsa-sha2-512 for RSA keys (without it the agent makes
   * ssh-rsa SHA-1 signatures); when given, the agent's answer must use it.
   */
  async sign(publicKeyBlob: Uint8Array, data: Uint8Array, algorithm?: string): Promise<Uint8Array> {
    const flags = signFlagsForAlgorithm(algorithm)
    const response = await this.request({ type: "sign", publicKeyBlob, data, flags })
    if (response.type === "failure") throw new AgentError("failure", "the agent refused to sign (key not loaded, locked, or confirmation denied)")
    if (response.type !== "signature") throw this.unexpected(response, "a signature")
    let signed: string
    try {
      signed = parseSignatureBlob(response.signatureBlob).algorithm
    } catch (e) {
      throw new AgentError("malformed", `the agent returned a malformed signature: ${(e as Error).message}`)
    }
    if (algorithm !== undefined && signed !== algorithm) {
      throw new AgentError("unexpected-response", `asked the agent for a ${algorithm} signature, got ${signed}`)
    }
    return response.signatureBlob
  }

  /** Ends the connection; requests still waiting fail with reason "closed". */
  close(): void {
    this.closed = true
    this.fail(new AgentError("closed", "the agent client was closed"))
  }

  private unexpected(response: AgentResponse, wanted: string): AgentError {
    if (response.type === "failure") return new AgentError("failure", "the agent answered FAILURE")
    return new AgentError("unexpected-response", `expected ${wanted} from the agent, got ${response.type}`)
  }

  private request(request: AgentRequest): Promise<AgentResponse> {
    if (this.closed) return Promise.reject(new AgentError("closed", "the agent client was closed"))
    let bytes: Uint8Array
    try {
      bytes = encodeAgentRequest(request)
    } catch (e) {
      return Promise.reject(e)
    }
    const socket = this.connection()
    return new Promise<AgentResponse>((resolve, reject) => {
      this.pending.push({ resolve, reject })
      socket.ref()
      socket.write(bytes)
    })
  }

  private connection(): Socket {
    if (this.socket !== undefined) return this.socket
    const socket = createConnection(this.socketPath)
    this.socket = socket
    this.decoder = new AgentFrameDecoder()
    // events of a connection already given up on must not touch its successor
    const current = () => this.socket === socket
    socket.on("data", (chunk: Buffer) => current() && this.receive(chunk))
    socket.on("error", (e: NodeJS.ErrnoException) => {
      if (current()) this.fail(new AgentError("unavailable", `ssh-agent at ${this.socketPath}: ${e.code ?? e.message}`))
    })
    socket.on("close", () => current() && this.fail(new AgentError("closed", "the agent closed the connection")))
    return socket
  }

  private receive(chunk: Uint8Array): void {
    try {
      this.decoder.push(chunk)
      for (let payload = this.decoder.next(); payload !== undefined; payload = this.decoder.next()) {
        if (this.pending.length === 0) throw new AgentError("unexpected-response", "the agent sent a message nobody asked for")
        const response = decodeAgentResponse(payload)
        this.pending.shift()!.resolve(response)
      }
      if (this.pending.length === 0) this.socket?.unref()
    } catch (e) {
      // after a framing or decoding error the stream position is lost: drop the connection
      this.fail(e instanceof AgentError ? e : new AgentError("malformed", String(e)))
    }
  }

  /** Fails every waiting request and drops the connection; the next request reconnects. */
  private fail(error: AgentError): void {
    const socket = this.socket
    this.socket = undefined
    socket?.destroy()
    for (const waiting of this.pending.splice(0)) waiting.reject(error)
  }
}
