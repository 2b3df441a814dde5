/**
 * SFTP v3 in memory: the codec (round trips and malformed input for every packet), the
 * framer, the client session and pipelines against the server dispatcher, the Effect client
 * against the Effect server over an in-memory pipe, and the rooted node filesystem's jail.
 */
import { createHash, randomBytes } from "node:crypto"
import { mkdir, mkdtemp, readFile, rm, stat as fsStat, symlink, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { nodeFileSystem } from "../../src/node/NodeSftpFileSystem.js"
import type { Attributes } from "../../src/protocol/sftp/attributes.js"
import { longname, readAttributes, writeAttributes } from "../../src/protocol/sftp/attributes.js"
import { ReadPipeline, SftpClientSession, SftpSessionClosed, WritePipeline } from "../../src/protocol/sftp/client.js"
import type { DataParts, Outcome, ReadOutcome, ReadReply } from "../../src/protocol/sftp/client.js"
import { Extension, FileType, Fxp, OpenFlags, Status } from "../../src/protocol/sftp/constants.js"
import type { ExtendedRequest } from "../../src/protocol/sftp/extensions.js"
import {
  decodeExtendedPayload,
  decodeLimits,
  decodeStatVfs,
  decodeUsersGroups,
  encodeExtendedPayload,
  encodeLimits,
  encodeStatVfs,
  encodeUsersGroups
} from "../../src/protocol/sftp/extensions.js"
import { SftpFramer } from "../../src/protocol/sftp/framer.js"
import { memoryFileSystem } from "../../src/protocol/sftp/memoryFs.js"
import { flagsToString, stringToFlags } from "../../src/protocol/sftp/openMode.js"
import type { Request, Response } from "../../src/protocol/sftp/packets.js"
import {
  decodeHello,
  decodeRequest,
  decodeResponse,
  encodeInit,
  encodeRequest,
  encodeResponse,
  encodeVersion,
  encodeWriteHeader,
  writeHeaderLength
} from "../../src/protocol/sftp/packets.js"
import type { SftpFileSystem, SftpRequestHandler } from "../../src/protocol/sftp/server.js"
import { fileSystemHandler, SftpServerSession, SftpStatusError } from "../../src/protocol/sftp/server.js"
import { WireError } from "../../src/protocol/wire/errors.js"
import { SshReader } from "../../src/protocol/wire/reader.js"
import { SshWriter } from "../../src/protocol/wire/writer.js"
import * as Sftp from "../../src/Sftp.js"
import * as SftpServer from "../../src/SftpServer.js"
import { SftpError } from "../../src/SshError.js"

const bytes = (s: string) => new TextEncoder().encode(s)
const text = (b: Uint8Array) => new TextDecoder().decode(b)
const body = (packet: Uint8Array) => {
  const f = new SftpFramer(1 << 20)
  f.push(packet)
  const b = f.next()!
  expect(f.pending).toBe(0)
  return b
}
const fullAttrs: Attributes = {
  size: 2 ** 40 + 7,
  uid: 1000,
  gid: 100,
  mode: FileType.REGULAR | 0o640,
  atime: 1_700_000_000,
  mtime: 1_700_000_001,
  extended: [{ type: "foo@example.com", data: bytes("bar") }]
}
const handle = Uint8Array.of(0, 0, 0, 7)

const requests: ReadonlyArray<Request> = [
  { type: "open", id: 1, path: "/a/ü.txt", flags: OpenFlags.READ | OpenFlags.WRITE | OpenFlags.CREAT, attrs: fullAttrs },
  { type: "close", id: 2, handle },
  { type: "read", id: 3, handle, offset: 2 ** 45, length: 32768 },
  { type: "write", id: 4, handle, offset: 12, data: bytes("hello") },
  { type: "lstat", id: 5, path: "l" },
  { type: "fstat", id: 6, handle },
  { type: "setstat", id: 7, path: "s", attrs: { mode: 0o600 } },
  { type: "fsetstat", id: 8, handle, attrs: { atime: 1, mtime: 2 } },
  { type: "opendir", id: 9, path: "/" },
  { type: "readdir", id: 10, handle },
  { type: "remove", id: 11, path: "r" },
  { type: "mkdir", id: 12, path: "d", attrs: {} },
  { type: "rmdir", id: 13, path: "d" },
  { type: "realpath", id: 14, path: "." },
  { type: "stat", id: 15, path: "s" },
  { type: "rename", id: 16, oldPath: "a", newPath: "b" },
  { type: "readlink", id: 17, path: "link" },
  { type: "symlink", id: 18, targetPath: "target", linkPath: "link" },
  { type: "extended", id: 0xffffffff, name: Extension.LIMITS, data: new Uint8Array(0) }
]

const responses: ReadonlyArray<Response> = [
  { type: "status", id: 1, code: Status.NO_SUCH_FILE, message: "No such file", language: "en" },
  { type: "handle", id: 2, handle },
  { type: "data", id: 3, data: Uint8Array.from(randomBytes(1000)) },
  {
    type: "name",
    id: 4,
    entries: [
      { filename: "a", longname: "-rw-r--r-- 1 u g 1 Jan 1 00:00 a", attrs: fullAttrs },
      { filename: "b", longname: "b", attrs: {} }
    ]
  },
  { type: "attrs", id: 5, attrs: fullAttrs },
  { type: "extended-reply", id: 6, data: encodeLimits({ maxPacketLength: 1, maxReadLength: 2, maxWriteLength: 3, maxOpenHandles: 4 }) }
]

const extensionRequests: ReadonlyArray<ExtendedRequest> = [
  { name: Extension.POSIX_RENAME, oldPath: "a", newPath: "b" },
  { name: Extension.STATVFS, path: "/" },
  { name: Extension.FSTATVFS, handle },
  { name: Extension.HARDLINK, oldPath: "a", newPath: "b" },
  { name: Extension.FSYNC, handle },
  { name: Extension.LSETSTAT, path: "l", attrs: { uid: 1, gid: 2 } },
  { name: Extension.LIMITS },
  { name: Extension.EXPAND_PATH, path: "~/x" },
  { name: Extension.COPY_DATA, readHandle: handle, readOffset: 5, length: 0, writeHandle: Uint8Array.of(1), writeOffset: 9 },
  { name: Extension.HOME_DIRECTORY, username: "" },
  { name: Extension.USERS_GROUPS_BY_ID, uids: [0, 1000], gids: [] }
]

/** Every way of cutting a packet body short, plus trailing garbage. */
function mutilations(b: Uint8Array): Array<Uint8Array> {
  const out: Array<Uint8Array> = []
  for (let n = 1; n < b.length; n++) out.push(b.subarray(0, n))
  const extra = new Uint8Array(b.length + 3)
  extra.set(b)
  out.push(extra)
  return out
}

const typedOnly = (run: () => unknown) => {
  try {
    run()
  } catch (e) {
    expect(e).toBeInstanceOf(WireError)
  }
}

describe("SFTP codec", () => {
  it("round-trips every request", () => {
    for (const req of requests) expect(decodeRequest(body(encodeRequest(req)))).toEqual(req)
  })

  it("round-trips every response", () => {
    for (const res of responses) expect(decodeResponse(body(encodeResponse(res)))).toEqual(res)
  })

  it("round-trips INIT and VERSION with extensions", () => {
    const hello = { version: 3, extensions: [["posix-rename@openssh.com", "1"], ["statvfs@openssh.com", "2"]] as const }
    expect(decodeHello(body(encodeInit(hello)), Fxp.INIT)).toEqual(hello)
    expect(decodeHello(body(encodeVersion(hello)), Fxp.VERSION)).toEqual(hello)
    expect(() => decodeHello(body(encodeInit(hello)), Fxp.VERSION)).toThrow(WireError)
  })

  it("sends SYMLINK as OpenSSH does: target first, then the link", () => {
    const r = new SshReader(body(encodeRequest({ type: "symlink", id: 1, targetPath: "T", linkPath: "L" })))
    expect([r.byte(), r.uint32(), r.ascii(), r.ascii()]).toEqual([Fxp.SYMLINK, 1, "T", "L"])
  })

  it("round-trips attributes field by field, extended ones included", () => {
    for (const a of [{}, { size: 0 }, { uid: 1, gid: 2 }, { mode: 0o755 }, { atime: 3, mtime: 4 }, fullAttrs] as Array<Attributes>) {
      const w = new SshWriter()
      writeAttributes(w, a)
      const r = new SshReader(w.finish())
      expect(readAttributes(r)).toEqual(a)
      r.end()
    }
  })

  it("round-trips every extension payload and reply", () => {
    for (const req of extensionRequests) expect(decodeExtendedPayload(req.name, encodeExtendedPayload(req))).toEqual(req)
    expect(decodeExtendedPayload("nope@example.com", new Uint8Array(0))).toBeUndefined()
    const vfs = { bsize: 4096, frsize: 4096, blocks: 10, bfree: 5, bavail: 4, files: 100, ffree: 50, favail: 49, fsid: 12345, flag: 1, namemax: 255 }
    expect(decodeStatVfs(encodeStatVfs(vfs))).toEqual(vfs)
    const limits = { maxPacketLength: 262144, maxReadLength: 261120, maxWriteLength: 261120, maxOpenHandles: 0 }
    expect(decodeLimits(encodeLimits(limits))).toEqual(limits)
    expect(decodeUsersGroups(encodeUsersGroups(["root", ""], ["wheel"]))).toEqual({ users: ["root", ""], groups: ["wheel"] })
  })

  it("gives a typed error for every truncated or padded request and response", () => {
    for (const req of requests.filter((r) => r.type !== "extended")) {
      for (const bad of mutilations(body(encodeRequest(req)))) expect(() => decodeRequest(bad)).toThrow(WireError)
    }
    for (const res of responses.filter((r) => r.type !== "extended-reply")) {
      const b = body(encodeResponse(res))
      // STATUS may legitimately omit message and language (old servers): only cuts inside a field are errors
      const cuts = res.type === "status" ? mutilations(b).filter((m) => m.length < 9 || (m.length > 13 && m.length !== 13 + 12 && m.length !== b.length)) : mutilations(b)
      for (const bad of cuts) expect(() => decodeResponse(bad), `${res.type} cut to ${bad.length}`).toThrow(WireError)
    }
    for (const req of extensionRequests.filter((r) => r.name !== Extension.LIMITS)) {
      for (const bad of mutilations(encodeExtendedPayload(req))) expect(() => decodeExtendedPayload(req.name, bad)).toThrow(WireError)
    }
    for (const bad of mutilations(encodeLimits({ maxPacketLength: 1, maxReadLength: 2, maxWriteLength: 3, maxOpenHandles: 4 }))) {
      expect(() => decodeLimits(bad)).toThrow(WireError)
    }
    expect(() => decodeUsersGroups(Uint8Array.of(0, 0, 0, 1, 0))).toThrow(WireError)
    expect(() => decodeExtendedPayload(Extension.USERS_GROUPS_BY_ID, new SshWriter().string(Uint8Array.of(1, 2, 3)).string(new Uint8Array(0)).finish())).toThrow(WireError)
  })

  it("refuses lying counts and unknown attribute flags before allocating", () => {
    const name = new SshWriter().byte(Fxp.NAME).uint32(1).uint32(0x7fffffff).finish()
    expect(() => decodeResponse(name)).toThrow(/claims/)
    const ext = new SshWriter().byte(Fxp.ATTRS).uint32(1).uint32(0x80000000).uint32(0x7fffffff).finish()
    expect(() => decodeResponse(ext)).toThrow(/claims/)
    const flags = new SshWriter().byte(Fxp.ATTRS).uint32(1).uint32(0x100).finish()
    expect(() => decodeResponse(flags)).toThrow(/unknown ATTRS flags/)
    const huge = new SshWriter().byte(Fxp.READ).uint32(1).string(handle).uint64(2n ** 63n).uint32(1).finish()
    expect(() => decodeRequest(huge)).toThrow(/beyond 2\^53/)
  })

  it("never throws anything but WireError on random garbage", () => {
    for (let i = 0; i < 2000; i++) {
      const junk = randomBytes(1 + (i % 64))
      typedOnly(() => decodeRequest(junk))
      typedOnly(() => decodeResponse(junk))
      typedOnly(() => decodeHello(junk, Fxp.VERSION))
      for (const req of extensionRequests) typedOnly(() => decodeExtendedPayload(req.name, junk))
    }
  })

  it("returns undefined for a request type v3 does not define", () => {
    expect(decodeRequest(Uint8Array.of(99, 0, 0, 0, 1))).toBeUndefined()
  })

  it("maps fs.open mode strings to pflags and back", () => {
    expect(stringToFlags("r")).toBe(OpenFlags.READ)
    expect(stringToFlags("w")).toBe(OpenFlags.WRITE | OpenFlags.CREAT | OpenFlags.TRUNC)
    expect(stringToFlags("xa+")).toBe(OpenFlags.APPEND | OpenFlags.CREAT | OpenFlags.READ | OpenFlags.WRITE | OpenFlags.EXCL)
    expect(stringToFlags("rw")).toBeUndefined()
    expect(flagsToString(OpenFlags.READ | OpenFlags.WRITE)).toBe("r+")
    expect(flagsToString(OpenFlags.EXCL)).toBeUndefined()
  })

  it("formats ls -l lines", () => {
    const now = Date.UTC(2024, 5, 1)
    expect(longname("f", { mode: FileType.REGULAR | 0o4755, size: 12, uid: 0, gid: 0, mtime: now / 1000 - 3600 }, now)).toMatch(
      /^-rwsr-xr-x +1 0 +0 +12 May 31 23:00 f$/
    )
    expect(longname("d", { mode: FileType.DIRECTORY | 0o1777, mtime: 0 }, now)).toMatch(/^drwxrwxrwt .* Jan  1  1970 d$/)
  })
})

describe("SFTP framer", () => {
  it("reassembles packets split anywhere and keeps those within a chunk as views", () => {
    const packets = requests.map(encodeRequest)
    const stream = new Uint8Array(packets.reduce((n, p) => n + p.length, 0))
    let o = 0
    for (const p of packets) {
      stream.set(p, o)
      o += p.length
    }
    for (const step of [1, 3, 7, 1000]) {
      const f = new SftpFramer(1 << 20)
      const got: Array<Request> = []
      for (let i = 0; i < stream.length; i += step) {
        f.push(stream.subarray(i, i + step))
        for (let b = f.next(); b; b = f.next()) got.push(decodeRequest(b)!)
      }
      expect(got).toEqual(requests)
    }
    const f = new SftpFramer(1 << 20)
    f.push(stream)
    expect(f.next()!.buffer).toBe(stream.buffer)
  })

  it("refuses a zero length and a length beyond the maximum, before buffering it", () => {
    const zero = new SftpFramer(100)
    zero.push(Uint8Array.of(0, 0, 0, 0))
    expect(() => zero.next()).toThrow(WireError)
    const big = new SftpFramer(100)
    big.push(Uint8Array.of(0, 0, 0, 101))
    expect(() => big.next()).toThrow(/exceeds the maximum of 100/)
    const split = new SftpFramer(100)
    split.push(Uint8Array.of(0xff))
    expect(split.next()).toBeUndefined()
    split.push(Uint8Array.of(0xff, 0xff, 0xff))
    expect(() => split.next()).toThrow(WireError)
  })
})

/** Pumps bytes between a client session and a server session until both are quiet. */
async function pump(client: SftpClientSession, server: SftpServerSession): Promise<void> {
  for (let idle = 0; idle < 3; ) {
    const c = client.pollTransmit()
    if (c) for (const p of c) server.receive(p)
    await new Promise((r) => setImmediate(r))
    const s = server.pollTransmit()
    if (s) for (const p of s) client.receive(p)
    idle = c || s ? 0 : idle + 1
  }
}

const call = async (client: SftpClientSession, server: SftpServerSession, body: Parameters<SftpClientSession["request"]>[0]): Promise<Outcome> => {
  let outcome: Outcome | undefined
  client.request(body, (o) => (outcome = o))
  await pump(client, server)
  return outcome!
}

describe("SFTP client session ↔ server dispatcher", () => {
  const setup = async (fs: SftpFileSystem = memoryFileSystem()) => {
    const client = new SftpClientSession()
    const server = new SftpServerSession(fileSystemHandler(fs))
    await pump(client, server)
    return { client, server, fs }
  }

  it("negotiates version 3 and advertises every OpenSSH extension for the memory fs", async () => {
    const { client } = await setup()
    expect(client.version!.version).toBe(3)
    expect(new Map(client.version!.extensions)).toEqual(
      new Map([
        [Extension.POSIX_RENAME, "1"],
        [Extension.STATVFS, "2"],
        [Extension.FSTATVFS, "2"],
        [Extension.HARDLINK, "1"],
        [Extension.FSYNC, "1"],
        [Extension.LSETSTAT, "1"],
        [Extension.LIMITS, "1"],
        [Extension.EXPAND_PATH, "1"],
        [Extension.COPY_DATA, "1"],
        [Extension.HOME_DIRECTORY, "1"],
        [Extension.USERS_GROUPS_BY_ID, "1"]
      ])
    )
  })

  it("opens, writes, reads back, stats and closes a file", async () => {
    const { client, server } = await setup()
    const h = (await call(client, server, { type: "open", path: "/f", flags: OpenFlags.WRITE | OpenFlags.CREAT | OpenFlags.READ, attrs: { mode: 0o600 } })) as Extract<Response, { type: "handle" }>
    expect(h.type).toBe("handle")
    expect(await call(client, server, { type: "write", handle: h.handle, offset: 0, data: bytes("hello world") })).toMatchObject({ type: "status", code: Status.OK })
    expect(await call(client, server, { type: "read", handle: h.handle, offset: 6, length: 100 })).toMatchObject({ type: "data", data: bytes("world") })
    expect(await call(client, server, { type: "read", handle: h.handle, offset: 11, length: 100 })).toMatchObject({ type: "status", code: Status.EOF })
    expect(await call(client, server, { type: "fstat", handle: h.handle })).toMatchObject({ type: "attrs", attrs: { size: 11, mode: FileType.REGULAR | 0o600 } })
    expect(await call(client, server, { type: "close", handle: h.handle })).toMatchObject({ code: Status.OK })
    expect(await call(client, server, { type: "close", handle: h.handle })).toMatchObject({ code: Status.FAILURE, message: "invalid handle" })
  })

  it("answers a malformed request with BAD_MESSAGE and keeps serving", async () => {
    const { client, server } = await setup()
    const bad = new SshWriter().uint32(0).byte(Fxp.OPEN).uint32(77).uint32(1000).finish()
    new DataView(bad.buffer).setUint32(0, bad.length - 4)
    server.receive(bad)
    await new Promise((r) => setImmediate(r))
    const answer = decodeResponse(body(server.pollTransmit()![0]!))
    expect(answer).toMatchObject({ type: "status", id: 77, code: Status.BAD_MESSAGE })
    expect(await call(client, server, { type: "realpath", path: "." })).toMatchObject({ type: "name", entries: [{ filename: "/" }] })
  })

  it("answers unknown packet types and extensions with OP_UNSUPPORTED", async () => {
    const { client, server } = await setup()
    server.receive(Uint8Array.of(0, 0, 0, 5, 99, 0, 0, 0, 42))
    expect(decodeResponse(body(server.pollTransmit()![0]!))).toMatchObject({ id: 42, code: Status.OP_UNSUPPORTED })
    expect(await call(client, server, { type: "extended", name: "nope@example.com", data: new Uint8Array(0) })).toMatchObject({ code: Status.OP_UNSUPPORTED })
    expect(await call(client, server, { type: "extended", name: Extension.POSIX_RENAME, data: Uint8Array.of(1) })).toMatchObject({ code: Status.BAD_MESSAGE })
  })

  it("ends the session on a broken frame or a request before INIT, without throwing", async () => {
    const { server } = await setup()
    server.receive(Uint8Array.of(0x7f, 0xff, 0xff, 0xff))
    expect(server.ended).toMatch(/exceeds the maximum/)
    const fresh = new SftpServerSession(fileSystemHandler(memoryFileSystem()))
    fresh.receive(encodeRequest({ type: "stat", id: 1, path: "/" }))
    expect(fresh.ended).toMatch(/expected SSH_FXP_INIT/)
    const short = new SftpServerSession(fileSystemHandler(memoryFileSystem()))
    short.receive(encodeInit({ version: 3, extensions: [] }))
    short.receive(Uint8Array.of(0, 0, 0, 2, Fxp.STAT, 0))
    expect(short.ended).toMatch(/too short/)
  })

  it("survives a flood of random packets with a valid frame", async () => {
    const { client, server } = await setup()
    for (let i = 0; i < 500; i++) {
      const junk = randomBytes(5 + (i % 40))
      const framed = new Uint8Array(4 + junk.length)
      new DataView(framed.buffer).setUint32(0, junk.length)
      framed.set(junk, 4)
      if (junk[0] === Fxp.INIT) continue
      server.receive(framed)
    }
    await new Promise((r) => setTimeout(r, 20))
    server.pollTransmit()
    expect(server.ended).toBeUndefined()
    expect(await call(client, server, { type: "stat", path: "/" })).toMatchObject({ type: "attrs" })
  })

  it("implements every extension", async () => {
    const { client, server } = await setup()
    const ext = (req: ExtendedRequest) => call(client, server, { type: "extended", name: req.name, data: encodeExtendedPayload(req) })
    const open = async (path: string, flags: number) => ((await call(client, server, { type: "open", path, flags, attrs: {} })) as Extract<Response, { type: "handle" }>).handle
    const src = await open("/src", OpenFlags.WRITE | OpenFlags.CREAT | OpenFlags.READ)
    await call(client, server, { type: "write", handle: src, offset: 0, data: bytes("0123456789") })
    const dst = await open("/dst", OpenFlags.WRITE | OpenFlags.CREAT)
    expect(await ext({ name: Extension.COPY_DATA, readHandle: src, readOffset: 2, length: 0, writeHandle: dst, writeOffset: 1 })).toMatchObject({ code: Status.OK })
    expect(await ext({ name: Extension.COPY_DATA, readHandle: src, readOffset: 0, length: 1, writeHandle: src, writeOffset: 5 })).toMatchObject({ code: Status.FAILURE })
    expect(await ext({ name: Extension.FSYNC, handle: dst })).toMatchObject({ code: Status.OK })
    const vfs = (await ext({ name: Extension.FSTATVFS, handle: dst })) as Extract<Response, { type: "extended-reply" }>
    expect(decodeStatVfs(vfs.data).namemax).toBe(255)
    await call(client, server, { type: "close", handle: dst })
    expect(await call(client, server, { type: "stat", path: "/dst" })).toMatchObject({ attrs: { size: 9 } })
    expect(await ext({ name: Extension.HARDLINK, oldPath: "/dst", newPath: "/hard" })).toMatchObject({ code: Status.OK })
    expect(await ext({ name: Extension.POSIX_RENAME, oldPath: "/hard", newPath: "/src" })).toMatchObject({ code: Status.OK })
    expect(await call(client, server, { type: "rename", oldPath: "/dst", newPath: "/src" })).toMatchObject({ code: Status.FAILURE })
    await call(client, server, { type: "symlink", targetPath: "/src", linkPath: "/ln" })
    expect(await ext({ name: Extension.LSETSTAT, path: "/ln", attrs: { atime: 5, mtime: 6 } })).toMatchObject({ code: Status.OK })
    expect(await call(client, server, { type: "lstat", path: "/ln" })).toMatchObject({ attrs: { mtime: 6 } })
    const limits = (await ext({ name: Extension.LIMITS })) as Extract<Response, { type: "extended-reply" }>
    expect(decodeLimits(limits.data).maxReadLength).toBe(261120)
    expect(await ext({ name: Extension.EXPAND_PATH, path: "~/./src" })).toMatchObject({ entries: [{ filename: "/src" }] })
    expect(await ext({ name: Extension.HOME_DIRECTORY, username: "" })).toMatchObject({ entries: [{ filename: "/" }] })
    const ug = (await ext({ name: Extension.USERS_GROUPS_BY_ID, uids: [1000, 5], gids: [1000] })) as Extract<Response, { type: "extended-reply" }>
    expect(decodeUsersGroups(ug.data)).toEqual({ users: ["user", ""], groups: ["group"] })
    expect(await ext({ name: Extension.STATVFS, path: "/" })).toMatchObject({ type: "extended-reply" })
  })

  it("queues requests beyond maxInFlight until answers free a slot", async () => {
    const client = new SftpClientSession({ maxInFlight: 2 })
    const server = new SftpServerSession(fileSystemHandler(memoryFileSystem()))
    await pump(client, server)
    const got: Array<number> = []
    for (let i = 0; i < 5; i++) client.request({ type: "stat", path: "/" }, (o) => got.push((o as Response).id))
    const first = client.pollTransmit()!
    expect(first).toHaveLength(2)
    for (const p of first) server.receive(p)
    await pump(client, server)
    expect(got.sort()).toEqual([0, 1, 2, 3, 4])
  })

  it("fails every pending request when the session closes, and later ones at once", () => {
    const client = new SftpClientSession()
    const outcomes: Array<Outcome> = []
    client.request({ type: "stat", path: "/" }, (o) => outcomes.push(o))
    client.close(new SftpSessionClosed("connection-lost", "gone"))
    client.request({ type: "stat", path: "/" }, (o) => outcomes.push(o))
    expect(outcomes.map((o) => (o as SftpSessionClosed).reason)).toEqual(["connection-lost", "connection-lost"])
  })

  it("closes the client session on a response to an unknown id or a garbage VERSION", () => {
    const client = new SftpClientSession()
    client.receive(encodeVersion({ version: 3, extensions: [] }))
    client.receive(encodeResponse({ type: "status", id: 9, code: 0, message: "", language: "" }))
    expect(client.closed?.message).toMatch(/unknown request id 9/)
    const other = new SftpClientSession()
    other.receive(Uint8Array.of(0, 0, 0, 1, 77))
    expect(other.closed?.reason).toBe("protocol")
  })
})

describe("SFTP DATA spread over channel chunks", () => {
  /** A client past VERSION, and a DATA for request 0 cut into chunks of `step` bytes. */
  const setup = (data: Uint8Array, step: number) => {
    const client = new SftpClientSession()
    client.receive(encodeVersion({ version: 3, extensions: [] }))
    const packet = encodeResponse({ type: "data", id: 0, data })
    const chunks: Array<Uint8Array> = []
    for (let i = 0; i < packet.length; i += step) chunks.push(packet.slice(i, i + step))
    return { client, chunks }
  }

  it("hands a READ made with readParts the received chunks themselves, without copying", () => {
    const data = randomBytes(100_000)
    const { client, chunks } = setup(data, 32_768)
    let reply: ReadReply | undefined
    client.readParts(handle, 0, 100_000, (r) => (reply = r))
    for (const c of chunks) client.receive(c)
    expect(reply).toMatchObject({ type: "data-parts", id: 0 })
    const parts = (reply as DataParts).parts
    expect((reply as DataParts).length).toBe(100_000)
    expect(Buffer.concat(parts).equals(data)).toBe(true)
    // every part after the header's chunk is one of the received chunks
    expect(parts.slice(1).map((p) => p.buffer)).toEqual(chunks.slice(1).map((c) => c.buffer))
  })

  it("still gives an ordinary request one contiguous DATA, and readParts the same bytes when the header is split", () => {
    const data = randomBytes(5_000)
    const plain = setup(data, 1000)
    let outcome: Outcome | undefined
    plain.client.request({ type: "read", handle, offset: 0, length: 5_000 }, (o) => (outcome = o))
    for (const c of plain.chunks) plain.client.receive(c)
    expect(outcome).toMatchObject({ type: "data", id: 0 })
    expect(Buffer.from((outcome as Extract<Response, { type: "data" }>).data).equals(data)).toBe(true)
    const split = setup(data, 5)
    let reply: ReadReply | undefined
    split.client.readParts(handle, 0, 5_000, (r) => (reply = r))
    for (const c of split.chunks) split.client.receive(c)
    expect(Buffer.concat((reply as DataParts).parts).equals(data)).toBe(true)
  })

  it("ends the session with a protocol error on a spread DATA whose inner length lies", () => {
    const { client, chunks } = setup(randomBytes(70_000), 32_768)
    new DataView(chunks[0]!.buffer, chunks[0]!.byteOffset).setUint32(9, 69_999)
    let reply: ReadReply | undefined
    client.readParts(handle, 0, 70_000, (r) => (reply = r))
    for (const c of chunks) client.receive(c)
    expect(client.closed?.reason).toBe("protocol")
    expect(client.closed?.message).toMatch(/claims 69999 bytes/)
    expect(reply).toBe(client.closed)
  })

  it("builds a WRITE around data already in place, equal to the ordinary encoding", () => {
    const data = randomBytes(3_000)
    const buffer = new Uint8Array(writeHeaderLength(handle) + 4_000)
    buffer.set(data, writeHeaderLength(handle))
    const packet = encodeWriteHeader(buffer, handle, 2 ** 40 + 5, data.length, 7)
    expect(Buffer.from(packet).equals(Buffer.from(encodeRequest({ type: "write", id: 7, handle, offset: 2 ** 40 + 5, data })))).toBe(true)
    expect(packet.buffer).toBe(buffer.buffer)
  })
})

/** A server whose reads answer short and out of order, to exercise the pipeline's ordering. */
function scrambledServer(content: Uint8Array): SftpRequestHandler {
  let n = 0
  return {
    extensions: [],
    handle: async (req) => {
      if (req.type === "open") return { type: "handle", handle: Uint8Array.of(1) }
      if (req.type === "close") return { type: "status", code: 0, message: "", language: "" }
      if (req.type !== "read") throw new SftpStatusError(Status.OP_UNSUPPORTED, "no")
      await new Promise((r) => setTimeout(r, (n++ * 7) % 5))
      if (req.offset >= content.length) return { type: "status", code: Status.EOF, message: "", language: "" }
      // about 60% of what was asked: every read leaves a remainder to fetch
      const len = Math.min(Math.ceil(req.length * 0.6), content.length - req.offset)
      return { type: "data", data: content.slice(req.offset, req.offset + len) }
    }
  }
}

describe("SFTP read and write pipelines", () => {
  const drain = async (pipeline: ReadPipeline, client: SftpClientSession, server: SftpServerSession) => {
    const parts: Array<Uint8Array> = []
    for (;;) {
      let outcome: ReadOutcome | undefined
      pipeline.pull((o) => (outcome = o))
      while (outcome === undefined) await pump(client, server)
      if (outcome._tag === "end") break
      if (outcome._tag === "error") throw new Error("read failed")
      parts.push(...outcome.parts)
    }
    return Buffer.concat(parts)
  }

  it("hands data out in file order despite short reads and replies out of order", async () => {
    const content = randomBytes(10_000)
    const client = new SftpClientSession()
    const server = new SftpServerSession(scrambledServer(content))
    await pump(client, server)
    const all = await drain(new ReadPipeline(client, Uint8Array.of(1), { start: 0, chunkSize: 512, concurrency: 8 }), client, server)
    expect(all.equals(content)).toBe(true)
    const range = await drain(new ReadPipeline(client, Uint8Array.of(1), { start: 100, end: 5000, chunkSize: 700, concurrency: 4 }), client, server)
    expect(range.equals(content.subarray(100, 5000))).toBe(true)
  })

  it("keeps at most `concurrency` reads in flight", () => {
    const client = new SftpClientSession()
    client.receive(encodeVersion({ version: 3, extensions: [] }))
    client.pollTransmit()
    const pipeline = new ReadPipeline(client, handle, { start: 0, chunkSize: 10, concurrency: 5 })
    pipeline.pull(() => undefined)
    expect(client.pollTransmit()).toHaveLength(5)
    expect(client.outstanding).toBe(5)
  })

  it("refills in batches of an eighth of its slots, so a batch leaves in one write", () => {
    const client = new SftpClientSession()
    client.receive(encodeVersion({ version: 3, extensions: [] }))
    client.pollTransmit()
    const pipeline = new ReadPipeline(client, handle, { start: 0, chunkSize: 10, concurrency: 16 })
    const delivered: Array<number> = []
    const pull = () => pipeline.pull((o) => o._tag === "data" && delivered.push(o.offset))
    pull()
    expect(client.pollTransmit()).toHaveLength(16)
    client.receive(encodeResponse({ type: "data", id: 0, data: new Uint8Array(10) }))
    pull()
    // one slot free: below the batch of 2, nothing is sent yet
    expect(client.pollTransmit() ?? []).toHaveLength(0)
    expect(client.outstanding).toBe(15)
    client.receive(encodeResponse({ type: "data", id: 1, data: new Uint8Array(10) }))
    pull()
    expect(client.pollTransmit()).toHaveLength(2)
    expect(client.outstanding).toBe(16)
    expect(delivered).toEqual([0, 10])
  })

  it("reports the first failed write and stops sending", async () => {
    const client = new SftpClientSession()
    client.receive(encodeVersion({ version: 3, extensions: [] }))
    client.pollTransmit()
    const pipeline = new WritePipeline(client, handle, { concurrency: 2 })
    pipeline.write(0, bytes("a"))
    pipeline.write(1, bytes("b"))
    expect(pipeline.ready).toBe(false)
    client.receive(encodeResponse({ type: "status", id: 0, code: Status.PERMISSION_DENIED, message: "no", language: "" }))
    expect(pipeline.ready).toBe(true)
    expect(pipeline.failure?.offset).toBe(0)
    pipeline.write(2, bytes("c"))
    expect(client.pollTransmit()).toHaveLength(2)
  })
})

/** An in-memory duplex: the Effect client on one end, the Effect server on the other. */
const memoryPipe = Effect.gen(function* () {
  const c2s = yield* Queue.unbounded<Uint8Array | null>()
  const s2c = yield* Queue.unbounded<Uint8Array | null>()
  const end = (q: Queue.Queue<Uint8Array | null>) => Stream.fromQueue(q).pipe(Stream.takeWhile((b): b is Uint8Array => b !== null))
  const close = Effect.zipRight(Queue.offer(c2s, null), Queue.offer(s2c, null)).pipe(Effect.asVoid)
  return {
    client: { stdout: end(s2c), write: (d: Uint8Array) => Queue.offer(c2s, d.slice()), close } satisfies Sftp.SftpTransport,
    server: { stdout: end(c2s), write: (d: Uint8Array | string) => Queue.offer(s2c, typeof d === "string" ? bytes(d) : d.slice()).pipe(Effect.asVoid), close }
  }
})

const withSftp = <A, E>(
  backend: SftpFileSystem | SftpRequestHandler,
  use: (sftp: Sftp.Sftp) => Effect.Effect<A, E, Scope.Scope>
): Promise<A> =>
  Effect.runPromise(
    Effect.scoped(
      Effect.gen(function* () {
        const pipe = yield* memoryPipe
        yield* Effect.forkScoped(SftpServer.handleChannel(pipe.server as never, backend))
        const sftp = yield* Sftp.fromTransport(pipe.client)
        return yield* use(sftp)
      })
    )
  )

describe("Effect Sftp client ↔ SftpServer in memory", () => {
  it("runs every operation against the memory filesystem", async () => {
    const result = await withSftp(memoryFileSystem(), (sftp) =>
      Effect.gen(function* () {
        expect(sftp.limits.maxReadLength).toBe(261120)
        expect(sftp.chunkSize).toBe(255 * 1024)
        yield* sftp.mkdir("/d", { mode: 0o700 })
        yield* sftp.writeFile("/d/a.txt", "hello")
        const h = yield* sftp.open("/d/a.txt", "r+")
        yield* sftp.write(h, 5, bytes(" world"))
        const read = yield* sftp.read(h, 0, 100)
        const eof = yield* sftp.read(h, 11, 100)
        const fst = yield* sftp.fstat(h)
        yield* sftp.fsetstat(h, { mode: 0o600 })
        yield* sftp.fsync(h)
        const fvfs = yield* sftp.fstatvfs(h)
        yield* sftp.close(h)
        yield* sftp.symlink("a.txt", "/d/link")
        yield* sftp.utimes("/d/a.txt", 1000, new Date(2_000_000))
        yield* sftp.chown("/d/a.txt", 7, 8)
        yield* sftp.chmod("/d", 0o755)
        yield* sftp.lsetstat("/d/link", { atime: 1, mtime: 2 })
        const st = yield* sftp.stat("/d/link")
        const lst = yield* sftp.lstat("/d/link")
        yield* sftp.rename("/d/a.txt", "/d/b.txt")
        yield* sftp.hardlink("/d/b.txt", "/d/c.txt")
        yield* sftp.posixRename("/d/c.txt", "/d/b.txt")
        const names = (yield* sftp.list("/d")).map((e) => e.filename).sort()
        const dangling = yield* sftp.readFile("/d/link").pipe(Effect.flip)
        const handleDir = yield* sftp.opendir("/d")
        const first = yield* sftp.readdirBatch(handleDir)
        const second = yield* sftp.readdirBatch(handleDir)
        yield* sftp.close(handleDir)
        const src = yield* sftp.open("/d/b.txt", "r")
        const dst = yield* sftp.open("/copy", "w")
        yield* sftp.copyData(src, 0, 0, dst, 0)
        yield* Effect.all([sftp.close(src), sftp.close(dst)])
        return {
          read: text(read),
          eof: eof.length,
          fst,
          fvfs: fvfs.bsize,
          st,
          lst,
          names,
          dangling,
          first: Option.map(first, (entries) => entries.length),
          second: Option.isNone(second),
          copy: text(yield* sftp.readFile("/copy")),
          link: yield* sftp.readlink("/d/link"),
          real: yield* sftp.realpath("/d/../d/./b.txt"),
          expand: yield* sftp.expandPath("~/d"),
          home: yield* sftp.homeDirectory(),
          ug: yield* sftp.usersGroupsById([1000], [1000, 1]),
          vfs: (yield* sftp.statvfs("/")).namemax,
          exists: [yield* sftp.exists("/d/b.txt"), yield* sftp.exists("/nope")],
          removed: yield* Effect.all([sftp.remove("/d/b.txt"), sftp.remove("/d/link"), sftp.remove("/copy"), sftp.rmdir("/d")]).pipe(Effect.as(true)),
          gone: (yield* sftp.list("/")).length
        }
      })
    )
    expect(result.read).toBe("hello world")
    expect(result.eof).toBe(0)
    expect(result.fst.size).toBe(11)
    expect(result.fvfs).toBe(4096)
    expect(result.st).toMatchObject({ size: 11, uid: 7, gid: 8, atime: 1000, mtime: 2000, mode: FileType.REGULAR | 0o600 })
    expect(result.lst).toMatchObject({ mode: FileType.SYMLINK | 0o777, mtime: 2 })
    expect(result.names).toEqual(["b.txt", "link"])
    expect(result.dangling).toMatchObject({ _tag: "SftpError", reason: "no-such-file", path: "/d/link", operation: "open" })
    expect(result.first).toEqual(Option.some(4))
    expect(result.second).toBe(true)
    expect(result.copy).toBe("hello world")
    expect(result.link).toBe("a.txt")
    expect(result.real).toBe("/d/b.txt")
    expect(result.expand).toBe("/d")
    expect(result.home).toBe("/")
    expect(result.ug).toEqual({ users: ["user"], groups: ["group", ""] })
    expect(result.vfs).toBe(255)
    expect(result.exists).toEqual([true, false])
    expect(result.gone).toBe(0)
  })

  it("fails with SftpError carrying status, path and operation", async () => {
    const e = await withSftp(memoryFileSystem(), (sftp) => Effect.flip(sftp.rmdir("/missing")))
    expect(e).toBeInstanceOf(SftpError)
    expect(e).toMatchObject({ reason: "no-such-file", status: Status.NO_SUCH_FILE, path: "/missing", operation: "rmdir" })
    expect(e.message).toBe("sftp rmdir /missing: no such file: /missing")
  })

  it("refuses extensions the server did not advertise, locally", async () => {
    const bare: SftpRequestHandler = { extensions: [], handle: () => ({ type: "status", code: 0, message: "", language: "" }) }
    const e = await withSftp(bare, (sftp) => Effect.flip(sftp.posixRename("/a", "/b")))
    expect(e).toMatchObject({ reason: "op-unsupported", operation: "posixRename" })
  })

  it("streams big files both ways with reads and writes in flight, byte-exact", async () => {
    const content = randomBytes(3 * 1024 * 1024 + 7)
    const back = await withSftp(memoryFileSystem(), (sftp) =>
      Effect.gen(function* () {
        const pieces = Stream.fromIterable(Array.from({ length: 50 }, (_, i) => content.subarray(Math.floor((i * content.length) / 50), Math.floor(((i + 1) * content.length) / 50))))
        const written = yield* Stream.run(pieces, sftp.writeSink("/big", { chunkSize: 10_000, concurrency: 8 }))
        expect(written).toBe(content.length)
        const whole = yield* sftp.readFile("/big")
        const range = yield* Stream.runCollect(sftp.readStream("/big", { start: 1000, end: 2_000_001, chunkSize: 4096, concurrency: 3 }))
        return { whole, range: Buffer.concat(Chunk.toArray(range)) }
      })
    )
    expect(createHash("sha256").update(back.whole).digest("hex")).toBe(createHash("sha256").update(content).digest("hex"))
    expect(back.range.equals(content.subarray(1000, 2_000_001))).toBe(true)
  })

  it("reads through a server that answers short and out of order", async () => {
    const content = randomBytes(100_000)
    const got = await withSftp(scrambledServer(content), (sftp) => Stream.runCollect(sftp.readStream("/x", { chunkSize: 4096, concurrency: 16 })))
    expect(Buffer.concat(Chunk.toArray(got)).equals(content)).toBe(true)
  })

  it("lists a directory of 5000 entries as a stream", async () => {
    const fs = memoryFileSystem()
    await fs.mkdir("/many", {})
    for (let i = 0; i < 5000; i++) await (await fs.open(`/many/f${i}`, OpenFlags.WRITE | OpenFlags.CREAT, {})).close()
    const count = await withSftp(fs, (sftp) => Stream.runCount(sftp.readdir("/many")))
    expect(count).toBe(5000)
  })

  it("transfers files with fastGet/fastPut and reports progress", async () => {
    const dir = await mkdtemp(join(tmpdir(), "effect-ssh-sftp-fast-"))
    try {
      const content = randomBytes(1024 * 1024 + 7)
      await writeFile(join(dir, "up"), content)
      const progress: Array<number> = []
      const [up, down] = await withSftp(memoryFileSystem(), (sftp) =>
        Effect.all([
          sftp.fastPut(join(dir, "up"), "/remote", { chunkSize: 32768, onProgress: (t) => progress.push(t), mode: 0o640 }),
          sftp.fastGet("/remote", join(dir, "down"), { concurrency: 7, chunkSize: 10_000 })
        ])
      )
      expect([up, down]).toEqual([content.length, content.length])
      expect(progress[progress.length - 1]).toBe(content.length)
      expect((await readFile(join(dir, "down"))).equals(content)).toBe(true)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it("fails a transfer with a typed connection-lost error when the channel dies mid-way", async () => {
    const dir = await mkdtemp(join(tmpdir(), "effect-ssh-sftp-kill-"))
    try {
      const exit = await Effect.runPromiseExit(
        Effect.scoped(
          Effect.gen(function* () {
            const pipe = yield* memoryPipe
            const fs = memoryFileSystem()
            const file = await_(fs, "/f", randomBytes(2 * 1024 * 1024))
            yield* Effect.promise(() => file)
            yield* Effect.forkScoped(SftpServer.handleChannel(pipe.server as never, fs))
            const sftp = yield* Sftp.fromTransport(pipe.client)
            let seen = 0
            return yield* sftp.fastGet("/f", join(dir, "partial"), {
              chunkSize: 4096,
              concurrency: 2,
              onProgress: (t) => {
                seen = t
                if (seen > 100_000) Effect.runFork(pipe.client.close)
              }
            })
          })
        )
      )
      expect(Exit.isFailure(exit)).toBe(true)
      if (Exit.isFailure(exit)) {
        const e = exit.cause._tag === "Fail" ? exit.cause.error : undefined
        expect(e).toMatchObject({ _tag: "SftpError", reason: "connection-lost", operation: "fastGet", path: "/f" })
      }
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it("serves @effect/platform FileSystem code over SFTP", async () => {
    const out = await withSftp(memoryFileSystem(), (sftp) =>
      Effect.gen(function* () {
        const fs = sftp.fileSystem
        yield* fs.makeDirectory("/x/y/z", { recursive: true })
        yield* fs.writeFileString("/x/y/z/f.txt", "platform")
        yield* fs.copyFile("/x/y/z/f.txt", "/x/copy.txt")
        yield* fs.rename("/x/copy.txt", "/x/moved.txt")
        const info = yield* fs.stat("/x/moved.txt")
        const listing = (yield* fs.readDirectory("/x", { recursive: true })).sort()
        const streamed = yield* fs.stream("/x/moved.txt", { offset: 2, bytesToRead: 3 }).pipe(Stream.decodeText(), Stream.mkString)
        const viaFile = yield* Effect.scoped(
          Effect.gen(function* () {
            const f = yield* fs.open("/x/moved.txt", { flag: "r+" })
            yield* f.seek(4, "start")
            yield* f.writeAll(bytes("FORM"))
            yield* f.seek(0, "start")
            return yield* f.readAlloc(100)
          })
        )
        const missing = yield* Effect.flip(fs.stat("/nope"))
        const tmp = yield* fs.makeTempDirectory({ directory: "/x" })
        yield* fs.remove("/x", { recursive: true })
        return { info, listing, streamed, viaFile: Option.map(viaFile, text), missing, tmp, exists: yield* fs.exists("/x") }
      })
    )
    expect(out.info.type).toBe("File")
    expect(out.info.size).toBe(FileSystem.Size(8))
    expect(out.listing).toEqual(["moved.txt", "y", "y/z", "y/z/f.txt"])
    expect(out.streamed).toBe("atf")
    expect(out.viaFile).toEqual(Option.some("platFORM"))
    expect(out.missing).toMatchObject({ _tag: "SystemError", reason: "NotFound", method: "stat" })
    expect(out.tmp).toMatch(/^\/x\/[0-9a-f]{12}$/)
    expect(out.exists).toBe(false)
  })
})

async function await_(fs: SftpFileSystem, path: string, data: Uint8Array): Promise<void> {
  const f = await fs.open(path, OpenFlags.WRITE | OpenFlags.CREAT, {})
  await f.write(0, data)
  await f.close()
}

describe("rooted node filesystem", () => {
  let base: string
  let root: string
  let fs: SftpFileSystem
  beforeAll(async () => {
    base = await mkdtemp(join(tmpdir(), "effect-ssh-sftp-root-"))
    root = join(base, "root")
    await mkdir(join(root, "sub"), { recursive: true })
    await writeFile(join(base, "secret"), "outside")
    await writeFile(join(root, "sub", "inside.txt"), "inside")
    await symlink("/etc", join(root, "etc-link"))
    await symlink("../secret", join(root, "secret-link"))
    await symlink(join(base, "nothing-here"), join(root, "dangling-out"))
    await symlink("sub/inside.txt", join(root, "good-link"))
    fs = nodeFileSystem(root)
  })
  afterAll(() => rm(base, { recursive: true, force: true }))

  const denied = (p: Promise<unknown>) => expect(p).rejects.toMatchObject({ code: Status.PERMISSION_DENIED })
  const readAll = async (path: string) => {
    const f = await fs.open(path, OpenFlags.READ, {})
    const data = await f.read(0, 1000)
    await f.close()
    return text(data)
  }

  it("serves files under the root as /", async () => {
    expect(await fs.realpath(".")).toBe("/")
    expect(await fs.realpath("sub/../sub/inside.txt")).toBe("/sub/inside.txt")
    expect(await readAll("/sub/inside.txt")).toBe("inside")
    expect(await readAll("good-link")).toBe("inside")
  })

  it("keeps .. and absolute paths inside the root", async () => {
    expect(await fs.realpath("../../..")).toBe("/")
    await expect(fs.stat("/../secret")).rejects.toMatchObject({ code: Status.NO_SUCH_FILE })
    await expect(fs.stat("../../../../etc/passwd")).rejects.toMatchObject({ code: Status.NO_SUCH_FILE })
    await expect(readAll("/etc/passwd")).rejects.toMatchObject({ code: Status.NO_SUCH_FILE })
  })

  it("refuses symlinks that point outside, for every kind of access", async () => {
    await denied(fs.stat("/etc-link/passwd"))
    await denied(readAll("/etc-link/passwd"))
    await denied(fs.opendir("/etc-link"))
    await denied(readAll("/secret-link"))
    await denied(fs.open("/dangling-out", OpenFlags.WRITE | OpenFlags.CREAT, {}))
    await denied(fs.mkdir("/etc-link/x", {}))
    await denied(fs.rename("/sub/inside.txt", "/etc-link/stolen"))
    await denied(fs.symlink("x", "/etc-link/new-link"))
    await denied(fs.hardlink!("/secret-link", "/hard"))
    await expect(fsStat(join(base, "nothing-here"))).rejects.toThrow()
    // the link itself may be looked at: it is inside
    expect((await fs.lstat("/etc-link")).mode! & FileType.MASK).toBe(FileType.SYMLINK)
    expect(await fs.readlink("/etc-link")).toBe("/etc")
  })

  it("never names the real root in errors", async () => {
    const e = (await fs.stat("/missing/file").catch((x: unknown) => x)) as Error
    expect(e.message).not.toContain(base)
  })

  it("stores absolute symlink targets relative to the root and reads them back as the client wrote them", async () => {
    await fs.symlink("/sub/inside.txt", "/abs-link")
    expect(await fs.readlink("/abs-link")).toBe("/sub/inside.txt")
    expect(await readAll("/abs-link")).toBe("inside")
  })

  it("serves through the Effect server with OpenSSH's v3 rename semantics", async () => {
    const r = await withSftp(fs, (sftp) =>
      Effect.gen(function* () {
        yield* sftp.writeFile("/a", "A")
        yield* sftp.writeFile("/b", "B")
        const plain = yield* Effect.flip(sftp.rename("/a", "/b"))
        yield* sftp.posixRename("/a", "/b")
        const b = text(yield* sftp.readFile("/b"))
        const escape = yield* Effect.flip(sftp.readFile("/secret-link"))
        yield* sftp.remove("/b")
        return { plain, b, escape }
      })
    )
    expect(r.plain.reason).toBe("failure")
    expect(r.b).toBe("A")
    expect(r.escape).toMatchObject({ reason: "permission-denied", path: "/secret-link" })
  })
})

describe("server dispatcher: order of operations on one handle", () => {
  /** A file whose reads and writes take `delay` ms, logging when each starts and ends. */
  function slowFs(delay: number) {
    const log: string[] = []
    let content = new Uint8Array(1024)
    const fs = memoryFileSystem()
    const sleep = () => new Promise((r) => setTimeout(r, delay))
    const file = {
      read: async (offset: number, length: number) => {
        log.push(`read ${offset} start`)
        await sleep()
        log.push(`read ${offset} end`)
        return content.slice(offset, offset + length)
      },
      write: async (offset: number, data: Uint8Array) => {
        log.push(`write ${offset} start`)
        await sleep()
        const next = new Uint8Array(Math.max(content.length, offset + data.length))
        next.set(content)
        next.set(data, offset)
        content = next
        log.push(`write ${offset} end`)
      },
      stat: async () => ({ size: content.length }),
      setstat: async () => {},
      close: async () => {}
    }
    return { log, fs: { ...fs, open: async () => file } as SftpFileSystem }
  }

  it("runs non-overlapping reads and writes together, but a read after an overlapping write sees it", async () => {
    const { log, fs } = slowFs(20)
    const handler = fileSystemHandler(fs)
    const opened = await handler.handle({ type: "open", id: 1, path: "/f", flags: OpenFlags.READ | OpenFlags.WRITE, attrs: {} })
    if (opened.type !== "handle") throw new Error("no handle")
    const h = opened.handle
    const results = await Promise.all([
      handler.handle({ type: "read", id: 2, handle: h, offset: 0, length: 100 }),
      handler.handle({ type: "read", id: 3, handle: h, offset: 100, length: 100 }),
      handler.handle({ type: "write", id: 4, handle: h, offset: 500, data: new Uint8Array(10).fill(7) }),
      handler.handle({ type: "read", id: 5, handle: h, offset: 505, length: 2 })
    ])
    // the two reads and the write overlap in time: all three started before any ended
    expect(log.slice(0, 3).every((e) => e.endsWith("start"))).toBe(true)
    // the read of the written range waited for the write and sees its bytes
    expect(log.indexOf("read 505 start")).toBeGreaterThan(log.indexOf("write 500 end"))
    const last = results[3]
    expect(last.type === "data" && [...last.data]).toEqual([7, 7])
  })
})
