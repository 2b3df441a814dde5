/**
 * OpenSSHAgentClient against a private, real ssh-agent holding keys of every type.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, expect, it } from "vitest"
import { OpenSSHAgentClient } from "../../src/node/OpenSSHAgent.js"
import { AgentError, type AgentErrorReason } from "../../src/protocol/agent/errors.js"
import { encodeOpenSSHPrivateKey, generatePrivateKey } from "../../src/protocol/keys/privateKey.js"
import { parsePublicKeyLine, parseSignatureBlob, verifySignature } from "../../src/protocol/keys/publicKey.js"
import { type Agent, generateKey, startAgent } from "../support/openssh.js"
import { describeWithPeers } from "../support/peers.js"

async function agentReason(promise: Promise<unknown>): Promise<AgentErrorReason> {
  try {
    await promise
  } catch (e) {
    if (e instanceof AgentError) return e.reason
    throw e
  }
  throw new Error("expected an AgentError")
}

describeWithPeers(["ssh-agent", "ssh-add", "ssh-keygen"], "OpenSSH ssh-agent", () => {
  let dir: string
  let agent: Agent
  let client: OpenSSHAgentClient
  /** Public lines of the keys loaded, by comment. */
  const loaded = new Map<string, string>()

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "effect-ssh-agent-keys-"))
    agent = await startAgent()
    const specs = [
      ["ed25519", "ed25519", undefined],
      ["ecdsa-256", "ecdsa", 256],
      ["ecdsa-384", "ecdsa", 384],
      ["ecdsa-521", "ecdsa", 521],
      ["rsa-2048", "rsa", 2048],
      ["dsa", "dsa", undefined]
    ] as const
    for (const [name, type, bits] of specs) {
      const key = await generateKey(join(dir, name), type, { comment: `agent ${name}`, ...(bits ? { bits } : {}) })
      await agent.add(key.privatePath)
      loaded.set(`agent ${name}`, key.publicLine)
    }
    // a key this library generated and encoded, loaded by ssh-add itself
    const ours = generatePrivateKey("ed25519", { comment: "agent ours" })
    const oursPath = join(dir, "ours")
    await writeFile(oursPath, encodeOpenSSHPrivateKey(ours), { mode: 0o600 })
    await agent.add(oursPath)
    loaded.set("agent ours", `ssh-ed25519 ${Buffer.from(ours.publicKey.blob).toString("base64")} agent ours`)
    client = new OpenSSHAgentClient(agent.socket)
  }, 60_000)

  afterAll(async () => {
    client?.close()
    await agent?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  it("lists every loaded key with its comment", async () => {
    const identities = await client.identities()
    expect(identities.map((i) => i.comment).sort()).toEqual([...loaded.keys()].sort())
    for (const { publicKey, comment } of identities) {
      expect(publicKey.blob).toEqual(parsePublicKeyLine(loaded.get(comment)!).blob)
      expect(publicKey.comment).toBe(comment)
    }
  })

  it("signs with every key, and with RSA in each hash the flags ask for", async () => {
    const data = new TextEncoder().encode("session identifier and userauth request")
    const made: Array<string> = []
    for (const { publicKey } of await client.identities()) {
      const algorithms = publicKey.type === "ssh-rsa" ? ["rsa-sha2-256", "rsa-sha2-512", "ssh-rsa"] : [publicKey.type]
      for (const algorithm of algorithms) {
        const signature = await client.sign(publicKey.blob, data, algorithm)
        expect(parseSignatureBlob(signature).algorithm).toBe(algorithm)
        expect(verifySignature(publicKey.blob, signature, data, algorithm)).toBe(true)
        expect(verifySignature(publicKey.blob, signature, new TextEncoder().encode("other data"))).toBe(false)
        made.push(algorithm)
      }
    }
    expect(new Set(made)).toEqual(
      new Set(["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "rsa-sha2-256", "rsa-sha2-512", "ssh-rsa", "ssh-dss"])
    )
  })

  it("answers many requests in flight in order", async () => {
    const identities = await client.identities()
    const data = identities.map((_, i) => new TextEncoder().encode(`message ${i}`))
    const signatures = await Promise.all(identities.map((id, i) => client.sign(id.publicKey.blob, data[i]!)))
    signatures.forEach((sig, i) => expect(verifySignature(identities[i]!.publicKey.blob, sig, data[i]!)).toBe(true))
  })

  it("reports a key the agent does not hold as a failure, and keeps working", async () => {
    const stranger = generatePrivateKey("ed25519")
    expect(await agentReason(client.sign(stranger.publicKey.blob, new Uint8Array(1)))).toBe("failure")
    expect((await client.identities()).length).toBe(loaded.size)
  })

  it("fails with 'unavailable' when no agent listens, and with 'closed' after close()", async () => {
    const nowhere = new OpenSSHAgentClient(join(dir, "no-such-agent.sock"))
    expect(await agentReason(nowhere.identities())).toBe("unavailable")
    nowhere.close()
    const once = new OpenSSHAgentClient(agent.socket)
    expect((await once.identities()).length).toBe(loaded.size)
    once.close()
    expect(await agentReason(once.identities())).toBe("closed")
  })
})
