import { describe, expect, it } from "vitest"
import { Endpoint } from "../../src/protocol/endpoint.js"
import type { EndpointEvent } from "../../src/protocol/endpoint.js"
import { generatePrivateKey } from "../../src/protocol/keys/privateKey.js"
import type { SshPrivateKey } from "../../src/protocol/keys/privateKey.js"
import { signatureAlgorithms } from "../../src/protocol/keys/publicKey.js"
import { resolveAlgorithms, SUPPORTED, UnknownAlgorithmError } from "../../src/protocol/transport/algorithms.js"
import type { AlgorithmOptions } from "../../src/protocol/transport/algorithms.js"
import type { HostKeySigner } from "../../src/protocol/transport/transport.js"
import { encodeExecRequest, encodeExitStatus } from "../../src/protocol/connection/requests.js"
import { Msg } from "../../src/protocol/wire/messages.js"
import { message } from "../../src/protocol/wire/writer.js"
import { PacketEncoder } from "../../src/protocol/transport/packet.js"

const hostKeys: Record<string, SshPrivateKey> = {
  ed25519: generatePrivateKey("ed25519"),
  ecdsa256: generatePrivateKey("ecdsa", { bits: 256 }),
  ecdsa384: generatePrivateKey("ecdsa", { bits: 384 }),
  ecdsa521: generatePrivateKey("ecdsa", { bits: 521 }),
  rsa: generatePrivateKey("rsa", { bits: 2048 })
}
const signer = (key: SshPrivateKey): HostKeySigner => ({
  algorithms: signatureAlgorithms(key.type),
  blob: key.publicKey.blob,
  sign: (alg, data) => key.sign(alg, data)
})

interface Pair {
  client: Endpoint
  server: Endpoint
  clientEvents: EndpointEvent[]
  serverEvents: EndpointEvent[]
}

function makePair(
  clientAlgorithms: AlgorithmOptions = {},
  serverAlgorithms: AlgorithmOptions = clientAlgorithms,
  keys: ReadonlyArray<SshPrivateKey> = Object.values(hostKeys)
): Pair {
  const client = new Endpoint({ role: "client", software: "client_test", algorithms: resolveAlgorithms(clientAlgorithms) })
  const server = new Endpoint({
    role: "server",
    software: "server_test",
    algorithms: resolveAlgorithms(serverAlgorithms),
    hostKeys: keys.map(signer),
    extInfo: [["server-sig-algs", new TextEncoder().encode("ssh-ed25519,rsa-sha2-512,rsa-sha2-256")]]
  })
  return { client, server, clientEvents: [], serverEvents: [] }
}

/** Moves bytes both ways until neither side has anything to send; answers host key checks with `accept`. */
function shuttle(p: Pair, accept = true, rounds = 50): void {
  for (let i = 0; i < rounds; i++) {
    let moved = false
    const c = p.client.pollTransmit()
    if (c) {
      p.server.receive(c)
      moved = true
    }
    const s = p.server.pollTransmit()
    if (s) {
      p.client.receive(s)
      moved = true
    }
    for (let e = p.client.poll(); e; e = p.client.poll()) {
      p.clientEvents.push(e)
      if (e._tag === "HostKey") {
        p.client.guard(() => p.client.transport.acceptHostKey(accept))
        moved = true
      }
    }
    for (let e = p.server.poll(); e; e = p.server.poll()) p.serverEvents.push(e)
    if (!moved) return
  }
}


function authenticateWithPassword(p: Pair): void {
  shuttle(p)
  p.client.guard(() => p.client.clientAuth.password("alice", "secret"))
  shuttle(p)
  const request = p.serverEvents.find((e) => e._tag === "ServerAuth")
  expect(request).toBeDefined()
  if (request?._tag === "ServerAuth" && request.event._tag === "Request") {
    expect(request.event.request).toMatchObject({ method: "password", username: "alice", password: "secret" })
  }
  p.server.guard(() => p.server.serverAuth.accept())
  shuttle(p)
  expect(p.clientEvents.some((e) => e._tag === "Auth" && e.event._tag === "Success")).toBe(true)
}

/** The client opens a session channel and the server accepts it: both sides' channel ids. */
function openSession(p: Pair): { id: number; serverId: number } {
  let id = -1
  p.client.guard(() => {
    id = p.client.connection.openChannel("session")
  })
  shuttle(p)
  const open = p.serverEvents.find((e) => e._tag === "Connection" && e.event._tag === "ChannelOpenRequest")
  if (open?._tag !== "Connection" || open.event._tag !== "ChannelOpenRequest") throw new Error("no open request")
  const serverId = open.event.id
  p.server.guard(() => p.server.connection.acceptChannel(serverId))
  shuttle(p)
  return { id, serverId }
}

describe("client and server cores in memory", () => {
  it("agree on keys, authenticate and run an exec round trip", () => {
    const p = makePair()
    authenticateWithPassword(p)
    const kex = p.clientEvents.find((e) => e._tag === "KexDone")
    expect(kex?._tag === "KexDone" && kex.summary.kex).toBe("mlkem768x25519-sha256")
    expect(kex?._tag === "KexDone" && kex.summary.strict).toBe(true)
    expect(p.clientEvents.some((e) => e._tag === "ExtInfo")).toBe(true)

    const { id, serverId } = openSession(p)
    p.client.guard(() => p.client.connection.sendRequest(id, "exec", true, encodeExecRequest("echo hi")))
    shuttle(p)
    const req = p.serverEvents.find((e) => e._tag === "Connection" && e.event._tag === "ChannelRequest")
    expect(req?._tag === "Connection" && req.event._tag === "ChannelRequest" && req.event.request).toBe("exec")
    p.server.guard(() => {
      p.server.connection.replyRequest(serverId, true)
      p.server.connection.write(serverId, new TextEncoder().encode("hi\n"))
      p.server.connection.sendRequest(serverId, "exit-status", false, encodeExitStatus(3))
      p.server.connection.eof(serverId)
      p.server.connection.close(serverId)
    })
    shuttle(p)
    const connectionEvents = p.clientEvents.flatMap((e) => (e._tag === "Connection" ? [e.event] : []))
    expect(connectionEvents.map((e) => e._tag)).toEqual([
      "ChannelOpened",
      "ChannelRequestReply",
      "ChannelData",
      "ChannelRequest",
      "ChannelEof",
      "ChannelClose"
    ])
    const data = connectionEvents.find((e) => e._tag === "ChannelData")
    expect(data?._tag === "ChannelData" && new TextDecoder().decode(data.data)).toBe("hi\n")
  })

  for (const kex of SUPPORTED.kex) {
    it(`key exchange ${kex}`, () => {
      const p = makePair({ kex: [kex] })
      authenticateWithPassword(p)
      const done = p.clientEvents.find((e) => e._tag === "KexDone")
      expect(done?._tag === "KexDone" && done.summary.kex).toBe(kex)
    })
  }

  for (const cipher of SUPPORTED.cipher) {
    it(`cipher ${cipher}`, () => {
      const p = makePair({ cipher: [cipher], mac: SUPPORTED.mac })
      authenticateWithPassword(p)
      const done = p.clientEvents.find((e) => e._tag === "KexDone")
      expect(done?._tag === "KexDone" && done.summary.cipherC2S).toBe(cipher)
    })
  }

  for (const mac of SUPPORTED.mac) {
    it(`MAC ${mac}`, () => {
      const p = makePair({ cipher: ["aes128-ctr"], mac: [mac] })
      authenticateWithPassword(p)
      const done = p.clientEvents.find((e) => e._tag === "KexDone")
      expect(done?._tag === "KexDone" && done.summary.macS2C).toBe(mac)
    })
  }

  // certificate host keys need a CA: covered by test/interop/certificates.test.ts
  for (const hostKey of SUPPORTED.hostKey.filter((h) => h !== "ssh-dss" && !h.includes("-cert-v01@"))) {
    it(`host key ${hostKey}`, () => {
      const p = makePair({ hostKey: [hostKey] })
      authenticateWithPassword(p)
      const announced = p.clientEvents.find((e) => e._tag === "HostKey")
      expect(announced?._tag === "HostKey" && announced.algorithm).toBe(hostKey)
    })
  }

  for (const compression of ["zlib", "zlib@openssh.com"]) {
    it(`compression ${compression} carries channel data both ways`, () => {
      const p = makePair({ compression: [compression] })
      authenticateWithPassword(p)
      const done = p.clientEvents.find((e) => e._tag === "KexDone")
      expect(done?._tag === "KexDone" && done.summary.compressionC2S).toBe(compression)
      const { id } = openSession(p)
      const text = "compressible ".repeat(5000)
      p.client.guard(() => p.client.connection.write(id, new TextEncoder().encode(text)))
      shuttle(p)
      const received = p.serverEvents
        .flatMap((e) => (e._tag === "Connection" && e.event._tag === "ChannelData" ? [e.event.data] : []))
        .map((d) => new TextDecoder().decode(d))
        .join("")
      expect(received).toBe(text)
    })
  }

  it("rekeys on request and keeps the session id", () => {
    const p = makePair()
    authenticateWithPassword(p)
    const sessionId = p.client.transport.sessionId
    p.client.guard(() => p.client.transport.rekey())
    shuttle(p)
    const kexes = p.clientEvents.filter((e) => e._tag === "KexDone")
    expect(kexes).toHaveLength(2)
    expect(p.client.transport.sessionId).toEqual(sessionId)
  })

  it("after success ignores a new USERAUTH_REQUEST and refuses a second SERVICE_REQUEST (RFC 4252 §5.1)", () => {
    const p = makePair()
    authenticateWithPassword(p)
    const before = p.serverEvents.length
    const request = message((w) => w.byte(Msg.USERAUTH_REQUEST).string("alice").string("ssh-connection").string("none"))
    p.client.guard(() => p.client.transport.send(request))
    shuttle(p)
    expect(p.serverEvents.slice(before)).toEqual([])
    expect(p.server.authenticated).toBe(true)
    p.client.guard(() => p.client.transport.send(message((w) => w.byte(Msg.SERVICE_REQUEST).string("ssh-userauth"))))
    shuttle(p)
    const closed = p.serverEvents.find((e) => e._tag === "Closed")
    expect(closed?._tag === "Closed" && closed.error?.message).toBe("service ssh-userauth not available")
  })

  it("names both sides' lists when no cipher is common", () => {
    const p = makePair({ cipher: ["aes128-ctr"] }, { cipher: ["aes256-gcm@openssh.com"] })
    shuttle(p)
    const closed = p.clientEvents.find((e) => e._tag === "Closed")
    if (closed?._tag !== "Closed") throw new Error("not closed")
    expect(closed.error?.kind).toBe("no-common-algorithm")
    expect(closed.error?.message).toContain("aes128-ctr")
    expect(closed.error?.message).toContain("aes256-gcm@openssh.com")
  })

  it("refuses the connection when the host key is rejected", () => {
    const p = makePair()
    shuttle(p, false)
    const closed = p.clientEvents.find((e) => e._tag === "Closed")
    expect(closed?._tag === "Closed" && closed.error?.kind).toBe("host-key-rejected")
    expect(p.serverEvents.some((e) => e._tag === "Closed")).toBe(true)
  })

  it("strict kex: an IGNORE before KEXINIT ends the connection (Terrapin)", () => {
    const p = makePair()
    // the server's identification line and KEXINIT, with an IGNORE slipped in between by a MITM
    const serverBytes = p.server.pollTransmit()!
    const lineEnd = serverBytes.indexOf(0x0a) + 1
    const ignore = new PacketEncoder().encode(message((w) => w.byte(Msg.IGNORE).string("")))
    p.client.receive(serverBytes.subarray(0, lineEnd))
    p.client.receive(ignore)
    p.client.receive(serverBytes.subarray(lineEnd))
    const events: EndpointEvent[] = []
    for (let e = p.client.poll(); e; e = p.client.poll()) events.push(e)
    const closed = events.find((e) => e._tag === "Closed")
    expect(closed?._tag === "Closed" && closed.error?.message).toMatch(/strict kex|Terrapin/)
  })

  it("rejects an unknown algorithm name at configuration time", () => {
    expect(() => resolveAlgorithms({ cipher: ["aes128-ctr", "rot13"] })).toThrow(UnknownAlgorithmError)
    expect(() => resolveAlgorithms({ kex: { append: "nope" } })).toThrow(/unknown kex algorithm "nope"/)
  })

  it("applies append, prepend and remove to the defaults", () => {
    const lists = resolveAlgorithms({ cipher: { append: "aes128-cbc", prepend: "aes256-ctr", remove: /gcm/ } })
    expect(lists.cipher[0]).toBe("aes256-ctr")
    expect(lists.cipher.at(-1)).toBe("aes128-cbc")
    expect(lists.cipher.some((c) => c.includes("gcm"))).toBe(false)
  })
})

