/**
 * Our SFTP client against the npm `ssh2` server's SFTP: a server written here with ssh2's
 * per-request events, backed by a temp dir. ssh2 advertises no extensions and no limits,
 * so this also checks the client's v3-only path (32 KiB requests).
 */
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import ssh2 from "ssh2"
import type { Attributes, Connection, SFTPWrapper } from "ssh2"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Sftp from "../../src/Sftp.js"
import * as SshAuth from "../../src/SshAuth.js"
import * as SshClient from "../../src/SshClient.js"

const { Server, utils } = ssh2
const STATUS = utils.sftp.STATUS_CODE
const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex")

const attrsOf = (s: fs.Stats): Attributes => ({ mode: s.mode, uid: s.uid, gid: s.gid, size: s.size, atime: Math.floor(s.atimeMs / 1000), mtime: Math.floor(s.mtimeMs / 1000) })

/** Serves `root` through ssh2's SFTP events; paths are taken relative to it. */
function serveSftp(sftp: SFTPWrapper, root: string): void {
  const handles = new Map<number, { fd?: number; dir?: Array<string> | null; path: string }>()
  let next = 0
  const real = (p: string) => join(root, p)
  const handleFor = (entry: { fd?: number; dir?: Array<string> | null; path: string }) => {
    const n = next++
    handles.set(n, entry)
    const b = Buffer.alloc(4)
    b.writeUInt32BE(n)
    return b
  }
  const lookup = (h: Buffer) => handles.get(h.readUInt32BE(0))
  // ssh2 leaves the channel open when the client closes its side; without this the client waits for our CLOSE
  sftp.on("end", () => sftp.end())
  const fail = (id: number, e: NodeJS.ErrnoException) => sftp.status(id, e.code === "ENOENT" ? STATUS.NO_SUCH_FILE : STATUS.FAILURE, e.message)
  sftp.on("OPEN", (id, filename, flags) => {
    const mode = utils.sftp.flagsToString(flags)
    if (!mode) return sftp.status(id, STATUS.FAILURE)
    fs.open(real(filename), mode, (e, fd) => (e ? fail(id, e) : sftp.handle(id, handleFor({ fd, path: filename }))))
  })
  sftp.on("READ", (id, h, offset, length) => {
    const entry = lookup(h)
    if (entry?.fd === undefined) return sftp.status(id, STATUS.FAILURE)
    const buf = Buffer.alloc(length)
    fs.read(entry.fd, buf, 0, length, offset, (e, n) => (e ? fail(id, e) : n === 0 ? sftp.status(id, STATUS.EOF) : sftp.data(id, buf.subarray(0, n))))
  })
  sftp.on("WRITE", (id, h, offset, data) => {
    const entry = lookup(h)
    if (entry?.fd === undefined) return sftp.status(id, STATUS.FAILURE)
    fs.write(entry.fd, data, 0, data.length, offset, (e) => (e ? fail(id, e) : sftp.status(id, STATUS.OK)))
  })
  sftp.on("FSTAT", (id, h) => {
    const entry = lookup(h)
    if (entry?.fd === undefined) return sftp.status(id, STATUS.FAILURE)
    fs.fstat(entry.fd, (e, s) => (e ? fail(id, e) : sftp.attrs(id, attrsOf(s))))
  })
  sftp.on("CLOSE", (id, h) => {
    const entry = lookup(h)
    handles.delete(h.readUInt32BE(0))
    if (entry?.fd !== undefined) fs.close(entry.fd, (e) => (e ? fail(id, e) : sftp.status(id, STATUS.OK)))
    else sftp.status(id, entry ? STATUS.OK : STATUS.FAILURE)
  })
  sftp.on("OPENDIR", (id, path) =>
    fs.readdir(real(path), (e, names) => (e ? fail(id, e) : sftp.handle(id, handleFor({ dir: names, path }))))
  )
  sftp.on("READDIR", (id, h) => {
    const entry = lookup(h)
    if (!entry?.dir) return sftp.status(id, entry ? STATUS.EOF : STATUS.FAILURE)
    const names = entry.dir
    entry.dir = null
    sftp.name(
      id,
      names.map((filename) => ({ filename, longname: filename, attrs: attrsOf(fs.lstatSync(join(real(entry.path), filename))) }))
    )
  })
  const statWith = (fn: typeof fs.stat) => (id: number, path: string) => fn(real(path), (e, s) => (e ? fail(id, e) : sftp.attrs(id, attrsOf(s))))
  sftp.on("STAT", statWith(fs.stat))
  sftp.on("LSTAT", statWith(fs.lstat))
  const done = (id: number) => (e: NodeJS.ErrnoException | null) => (e ? fail(id, e) : sftp.status(id, STATUS.OK))
  sftp.on("MKDIR", (id, path) => fs.mkdir(real(path), done(id)))
  sftp.on("RMDIR", (id, path) => fs.rmdir(real(path), done(id)))
  sftp.on("REMOVE", (id, path) => fs.unlink(real(path), done(id)))
  sftp.on("RENAME", (id, from, to) => fs.rename(real(from), real(to), done(id)))
  sftp.on("SETSTAT", (id, path, attrs) => (attrs.mode !== undefined ? fs.chmod(real(path), attrs.mode & 0o7777, done(id)) : sftp.status(id, STATUS.OK)))
  sftp.on("REALPATH", (id, path) => sftp.name(id, [{ filename: join("/", path), longname: "", attrs: {} as Attributes }]))
}

describe("SFTP client ↔ npm ssh2 SFTP server", () => {
  let root: string
  let server: InstanceType<typeof Server>
  let port: number

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), "effect-ssh-ssh2-sftp-"))
    const hostKey = utils.generateKeyPairSync("ed25519").private
    server = new Server({ hostKeys: [hostKey] }, (client: Connection) => {
      client.on("authentication", (ctx) => (ctx.method === "password" && ctx.password === "pw" ? ctx.accept() : ctx.reject(["password"])))
      client.on("ready", () =>
        client.on("session", (accept) => {
          const session = accept()
          session.on("sftp", (acceptSftp) => serveSftp(acceptSftp(), root))
        })
      )
      client.on("error", () => undefined)
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    port = (server.address() as AddressInfo).port
  })

  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()))
    await rm(root, { recursive: true, force: true })
  })

  const withSftp = <A, E>(use: (sftp: Sftp.Sftp) => Effect.Effect<A, E, import("effect/Scope").Scope>) =>
    Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const ssh = yield* SshClient.connect({
            host: "127.0.0.1",
            port,
            username: "u",
            auth: [SshAuth.password(Redacted.make("pw"))],
            hostVerifier: SshClient.acceptAnyHostKey
          })
          return yield* use(yield* Sftp.make(ssh))
        })
      )
    )

  it("falls back to v3 defaults when no extension is advertised", async () => {
    const r = await withSftp((sftp) => Effect.succeed({ n: sftp.extensions.size, chunk: sftp.chunkSize }))
    expect(r).toEqual({ n: 0, chunk: 32 * 1024 })
  })

  it("does the basic operations, checked on disk", async () => {
    const r = await withSftp((sftp) =>
      Effect.gen(function* () {
        yield* sftp.mkdir("/dir")
        yield* sftp.writeFile("/dir/a.txt", "from effect-ssh")
        yield* sftp.chmod("/dir/a.txt", 0o600)
        yield* sftp.rename("/dir/a.txt", "/dir/b.txt")
        yield* sftp.writeFile("/dir/tmp", "x")
        yield* sftp.remove("/dir/tmp")
        return {
          text: new TextDecoder().decode(yield* sftp.readFile("/dir/b.txt")),
          stat: yield* sftp.stat("/dir/b.txt"),
          names: (yield* sftp.list("/dir")).map((e) => e.filename),
          real: yield* sftp.realpath("dir"),
          missing: yield* Effect.flip(sftp.stat("/nope")),
          unsupported: yield* Effect.flip(sftp.statvfs("/")),
          rmdirFull: yield* Effect.flip(sftp.rmdir("/dir"))
        }
      })
    )
    expect(r.text).toBe("from effect-ssh")
    expect(await readFile(join(root, "dir", "b.txt"), "utf8")).toBe("from effect-ssh")
    expect((await stat(join(root, "dir", "b.txt"))).mode & 0o777).toBe(0o600)
    expect(r.stat.size).toBe(15)
    expect(r.names).toEqual(["b.txt"])
    expect(r.real).toBe("/dir")
    expect(r.missing).toMatchObject({ reason: "no-such-file", operation: "stat", path: "/nope" })
    expect(r.unsupported).toMatchObject({ reason: "op-unsupported", operation: "statvfs" })
    expect(r.rmdirFull).toMatchObject({ reason: "failure", operation: "rmdir" })
  })

  it("transfers files both ways byte-exact, parallel and streamed", async () => {
    const data = Uint8Array.from(randomBytes(2 * 1024 * 1024 + 3))
    const local = join(root, "local-src")
    await writeFile(local, data)
    const got = await withSftp((sftp) =>
      Effect.gen(function* () {
        yield* sftp.fastPut(local, "/put")
        yield* Stream.run(Stream.make(data), sftp.writeSink("/sink"))
        yield* sftp.fastGet("/put", join(root, "got"))
        return Buffer.concat(Chunk.toArray(yield* Stream.runCollect(sftp.readStream("/sink", { start: 5 }))))
      })
    )
    expect(sha256(await readFile(join(root, "put")))).toBe(sha256(data))
    expect(sha256(await readFile(join(root, "sink")))).toBe(sha256(data))
    expect(sha256(await readFile(join(root, "got")))).toBe(sha256(data))
    expect(sha256(got)).toBe(sha256(data.subarray(5)))
  })
})
