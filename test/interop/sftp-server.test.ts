/**
 * Our SFTP server (SftpServer over a rooted real filesystem) against real clients: OpenSSH's
 * `sftp -b` through `effect-ssh serve --root`, the npm `ssh2` client and our own client, with
 * every result checked on disk; path escapes; malformed packets on a raw subsystem channel.
 */
import { createHash, randomBytes } from "node:crypto"
import * as fs from "node:fs"
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, statfs, symlink, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { once } from "node:events"
import { pipeline } from "node:stream/promises"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import ssh2 from "ssh2"
import type { SFTPWrapper } from "ssh2"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { serveRefusal, startServe } from "../support/serve.js"
import type { Serving } from "../support/serve.js"
import { generatePrivateKey } from "../../src/protocol/keys/privateKey.js"
import * as Sftp from "../../src/Sftp.js"
import * as SftpServer from "../../src/SftpServer.js"
import * as SshAuth from "../../src/SshAuth.js"
import * as SshClient from "../../src/SshClient.js"
import type { SshConnection } from "../../src/SshClient.js"
import { generateKey, run, runSsh } from "../support/openssh.js"
import type { GeneratedKey } from "../support/openssh.js"
import { passwordOrKeys, startServer } from "../support/ourServer.js"
import type { RunningServer } from "../support/ourServer.js"
import { describeWithPeers, requirePeer } from "../support/peers.js"

const PASSWORD = "sftp-server-pw"
const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex")
const fileSha = async (path: string) => sha256(await readFile(path))
const exists = (path: string) => lstat(path).then(() => true, () => false)

let dir: string
let srv: RunningServer
/** Served by the in-process server. */
let root: string
/** Next to the root: nothing in it may be read or written through the server. */
let outside: string

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "effect-ssh-sftp-server-"))
  root = join(dir, "root")
  outside = join(dir, "outside")
  await mkdir(root)
  await mkdir(outside)
  srv = await startServer({
    hostKeys: [generatePrivateKey("ed25519")],
    authenticate: passwordOrKeys(PASSWORD),
    onSession: SftpServer.sessionHandler(SftpServer.nodeFileSystem(root))
  })
})

afterAll(async () => {
  await srv?.stop()
  if (dir) await rm(dir, { recursive: true, force: true })
})

// ---- OpenSSH sftp -b against `effect-ssh serve --root` -----------------------------------

describeWithPeers(["sftp", "ssh", "ssh-keygen"], "OpenSSH sftp -b → effect-ssh serve --root", () => {
  let files: string
  let local: string
  let server: Serving
  let key: GeneratedKey
  let batches = 0

  beforeAll(async () => {
    key = await generateKey(join(dir, "id_ed25519"), "ed25519")
    files = join(dir, "served")
    local = join(dir, "local")
    await mkdir(files)
    await mkdir(local)
    await writeFile(join(dir, "authorized_keys"), `${key.publicLine}\n`)
    server = await startServe(["--listen", "127.0.0.1:0", "--authorized-keys", join(dir, "authorized_keys"), "--root", files])
  })
  afterAll(async () => {
    if (server) expect(await server.stop()).toBe(0)
  })

  /** Runs the commands with `sftp -b`; a failing command (without a leading "-") makes sftp exit 1. */
  const sftpBatch = async (commands: ReadonlyArray<string>, port = server.port) => {
    const batch = join(dir, `batch-${batches++}`)
    await writeFile(batch, `${commands.join("\n")}\n`)
    const options = ["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "BatchMode=yes", "IdentitiesOnly=yes", "LogLevel=ERROR"]
    return run(
      requirePeer("sftp"),
      ["-F", "/dev/null", "-b", batch, "-P", String(port), "-i", key.privatePath, ...options.flatMap((o) => ["-o", o]), "tester@127.0.0.1"],
      { timeoutMs: 60_000 }
    )
  }
  /** sftp's output without the echoed commands. */
  const outputLines = (stdout: string) => stdout.split("\n").filter((l) => l.trim() !== "" && !l.startsWith("sftp>"))

  it("announces the served folder", () => {
    expect(server.lines).toContain(`sftp: serving ${files} as /`)
    expect(server.lines).toContain("exec: disabled (sessions serve sftp only; use --exec)")
  })

  it("put and get are byte-exact", async () => {
    const data = randomBytes(3 * 1024 * 1024 + 7)
    await writeFile(join(local, "up.bin"), data)
    const r = await sftpBatch([`put ${join(local, "up.bin")} /up.bin`, `get /up.bin ${join(local, "down.bin")}`])
    expect(r.stderr).toBe("")
    expect(r.exitCode).toBe(0)
    expect(await fileSha(join(files, "up.bin"))).toBe(sha256(data))
    expect(await fileSha(join(local, "down.bin"))).toBe(sha256(data))
  })

  it("ls lists what is on disk, long lines from the server", async () => {
    await mkdir(join(files, "listing"))
    await mkdir(join(files, "listing", "sub"))
    await writeFile(join(files, "listing", "a.txt"), "12345")
    await writeFile(join(files, "listing", "b.bin"), randomBytes(1000))
    const r = await sftpBatch(["cd /listing", "ls -1", "ls -l"])
    expect(r.exitCode).toBe(0)
    const lines = outputLines(r.stdout)
    const names = (await readdir(join(files, "listing"))).sort()
    expect(lines.slice(0, names.length).map((l) => l.trim()).sort()).toEqual(names)
    const long = lines.slice(names.length)
    expect(long).toHaveLength(names.length)
    expect(long.find((l) => l.endsWith(" sub"))).toMatch(/^d/)
    expect(long.find((l) => l.endsWith(" a.txt"))).toMatch(/^-.* 5 .*a\.txt$/)
    expect(long.find((l) => l.endsWith(" b.bin"))).toMatch(/^-.* 1000 .*b\.bin$/)
  })

  it("mkdir, rmdir, rm and rename change the disk", async () => {
    await writeFile(join(files, "r1.txt"), "renamed")
    await writeFile(join(files, "existing.txt"), "overwritten")
    await writeFile(join(files, "del.txt"), "deleted")
    const r = await sftpBatch(["mkdir /made", "mkdir /gone", "rmdir /gone", "rename /r1.txt /r2.txt", "rename /r2.txt /existing.txt", "rm /del.txt"])
    expect(r.stderr).toBe("")
    expect(r.exitCode).toBe(0)
    expect((await stat(join(files, "made"))).isDirectory()).toBe(true)
    expect(await exists(join(files, "gone"))).toBe(false)
    expect(await exists(join(files, "r1.txt"))).toBe(false)
    expect(await exists(join(files, "r2.txt"))).toBe(false)
    // posix-rename@openssh.com replaces the target
    expect(await readFile(join(files, "existing.txt"), "utf8")).toBe("renamed")
    expect(await exists(join(files, "del.txt"))).toBe(false)
  })

  it("a failing command stops the batch with an error", async () => {
    const r = await sftpBatch(["rmdir /no-such-dir", "mkdir /not-reached"])
    expect(r.exitCode).toBe(1)
    expect(r.stderr).toMatch(/no-such-dir/)
    expect(await exists(join(files, "not-reached"))).toBe(false)
  })

  it("symlink and ln (hardlink@openssh.com)", async () => {
    await writeFile(join(files, "target.txt"), "link me")
    const r = await sftpBatch(["symlink target.txt /soft", "ln -s /target.txt /soft-abs", "ln /target.txt /hard"])
    expect(r.stderr).toBe("")
    expect(r.exitCode).toBe(0)
    expect((await lstat(join(files, "soft"))).isSymbolicLink()).toBe(true)
    expect(await readlink(join(files, "soft"))).toBe("target.txt")
    expect(await readFile(join(files, "soft"), "utf8")).toBe("link me")
    // an absolute target is the client's "/", the served folder
    expect(await readFile(join(files, "soft-abs"), "utf8")).toBe("link me")
    const [hard, target] = await Promise.all([stat(join(files, "hard")), stat(join(files, "target.txt"))])
    expect(hard.ino).toBe(target.ino)
    expect(target.nlink).toBe(2)
  })

  it("chmod", async () => {
    await writeFile(join(files, "mode.txt"), "x", { mode: 0o644 })
    await mkdir(join(files, "mode-dir"), { mode: 0o755 })
    const r = await sftpBatch(["chmod 600 /mode.txt", "chmod 700 /mode-dir"])
    expect(r.exitCode).toBe(0)
    expect((await stat(join(files, "mode.txt"))).mode & 0o7777).toBe(0o600)
    expect((await stat(join(files, "mode-dir"))).mode & 0o7777).toBe(0o700)
  })

  it("df (statvfs@openssh.com) reports the served filesystem", async () => {
    const r = await sftpBatch(["df /"])
    expect(r.stderr).toBe("")
    expect(r.exitCode).toBe(0)
    const [header, values] = outputLines(r.stdout)
    expect(header).toMatch(/Size\s+Used\s+Avail\s+\(root\)\s+%Capacity/)
    const s = await statfs(files)
    const size = Number(values!.trim().split(/\s+/)[0])
    expect(size).toBe(Math.floor((s.bsize * s.blocks) / 1024))
  })

  it("reget resumes a download after what is already there", async () => {
    const remote = randomBytes(2 * 1024 * 1024 + 11)
    await writeFile(join(files, "big.bin"), remote)
    // a prefix that differs from the remote one: a resumed transfer keeps it
    const prefix = randomBytes(700_001)
    await writeFile(join(local, "partial.bin"), prefix)
    const r = await sftpBatch([`reget /big.bin ${join(local, "partial.bin")}`])
    expect(r.exitCode).toBe(0)
    const expected = Buffer.concat([prefix, remote.subarray(prefix.length)])
    expect(await fileSha(join(local, "partial.bin"))).toBe(sha256(expected))
  })

  it("reput resumes an upload after what the server has", async () => {
    const source = randomBytes(2 * 1024 * 1024 + 13)
    await writeFile(join(local, "source.bin"), source)
    const prefix = randomBytes(500_003)
    await writeFile(join(files, "resumed.bin"), prefix)
    const r = await sftpBatch([`reput ${join(local, "source.bin")} /resumed.bin`])
    expect(r.exitCode).toBe(0)
    const expected = Buffer.concat([prefix, source.subarray(prefix.length)])
    expect(await fileSha(join(files, "resumed.bin"))).toBe(sha256(expected))
  })

  it("cannot leave the served folder", async () => {
    await symlink("/etc", join(files, "etc-link"))
    await writeFile(join(local, "escape.txt"), "must not land outside")
    const r = await sftpBatch([
      `-get ../../../../etc/passwd ${join(local, "p1")}`,
      `-get /etc/passwd ${join(local, "p2")}`,
      `-get /etc-link/passwd ${join(local, "p3")}`,
      `-put ${join(local, "escape.txt")} /etc-link/effect-ssh-escape`,
      `-put ${join(local, "escape.txt")} ../effect-ssh-escape`,
      "-ls /etc-link/"
    ])
    expect(r.exitCode).toBe(0)
    for (const p of ["p1", "p2", "p3"]) expect(await exists(join(local, p))).toBe(false)
    expect(await exists("/etc/effect-ssh-escape")).toBe(false)
    expect(await exists(join(dir, "effect-ssh-escape"))).toBe(false)
    expect(r.stderr).toMatch(/\/etc-link\/effect-ssh-escape": Permission denied/)
    // "../x" is the root's own x, as in a chroot
    expect(await readFile(join(files, "effect-ssh-escape"), "utf8")).toBe("must not land outside")
    // ls shows the link itself (lstat inside the root), never what /etc holds
    expect(outputLines(r.stdout).map((l) => l.trim())).toEqual(["/etc-link/"])
  })

  it("with --exec, the same server runs commands and serves sftp", async () => {
    const both = await startServe(["--listen", "127.0.0.1:0", "--authorized-keys", join(dir, "authorized_keys"), "--root", files, "--exec"])
    try {
      await writeFile(join(files, "exec.txt"), "via exec too")
      const r = await sftpBatch([`get /exec.txt ${join(local, "exec.txt")}`], both.port)
      expect(r.exitCode).toBe(0)
      expect(await readFile(join(local, "exec.txt"), "utf8")).toBe("via exec too")
      const e = await runSsh({ port: both.port, user: "tester", identityFile: key.privatePath, command: "echo exec-ok" })
      expect(e.stdout).toBe("exec-ok\n")
    } finally {
      expect(await both.stop()).toBe(0)
    }
  })

  it("refuses a --root that is not a directory", async () => {
    const { code, errors } = await serveRefusal(["--listen", "127.0.0.1:0", "--authorized-keys", join(dir, "authorized_keys"), "--root", join(dir, "no-such-dir")])
    expect(code).toBe(1)
    expect(errors).toMatch(/--root .*no-such-dir/)
  })
})

// ---- the npm ssh2 client ------------------------------------------------------------------

type Callback<T> = (err?: Error | null, value?: T) => void
const call = <T = void>(f: (cb: Callback<T>) => void) => new Promise<T>((resolve, reject) => f((e, v) => (e ? reject(e) : resolve(v as T))))
/** The SFTP status code of a failed ssh2 call. */
const statusOf = (p: Promise<unknown>) =>
  p.then(
    () => "succeeded",
    (e: { code?: unknown }) => e.code
  )

function withSsh2<A>(use: (sftp: SFTPWrapper) => Promise<A>): Promise<A> {
  return new Promise<A>((resolve, reject) => {
    const client = new ssh2.Client()
    client.on("ready", () =>
      client.sftp((err, sftp) => {
        if (err) {
          client.end()
          return reject(err)
        }
        use(sftp).then(
          (a) => {
            client.end()
            resolve(a)
          },
          (e: unknown) => {
            client.end()
            reject(e)
          }
        )
      })
    )
    client.on("error", reject)
    client.connect({ host: "127.0.0.1", port: srv.port, username: "tester", password: PASSWORD })
  })
}

describe("npm ssh2 SFTP client → our server", () => {
  const STATUS = ssh2.utils.sftp.STATUS_CODE

  it("readdir lists names and sizes as on disk", async () => {
    await mkdir(join(root, "ssh2dir"))
    await writeFile(join(root, "ssh2dir", "one"), "1")
    await writeFile(join(root, "ssh2dir", "three"), "333")
    await mkdir(join(root, "ssh2dir", "nested"))
    const entries = await withSsh2((sftp) => call<Array<{ filename: string; attrs: { size: number; isDirectory(): boolean } }>>((cb) => sftp.readdir("/ssh2dir", cb)))
    const seen = entries.map((e) => ({ name: e.filename, size: e.attrs.size, dir: e.attrs.isDirectory() })).sort((a, b) => a.name.localeCompare(b.name))
    const expected = await Promise.all(
      (await readdir(join(root, "ssh2dir"))).sort().map(async (name) => {
        const s = await stat(join(root, "ssh2dir", name))
        return { name, size: s.size, dir: s.isDirectory() }
      })
    )
    expect(seen).toEqual(expected)
  })

  it("fastPut and fastGet are byte-exact", async () => {
    const data = randomBytes(5 * 1024 * 1024 + 17)
    await writeFile(join(dir, "ssh2-up.bin"), data)
    await withSsh2(async (sftp) => {
      await call((cb) => sftp.fastPut(join(dir, "ssh2-up.bin"), "/fast.bin", cb))
      await call((cb) => sftp.fastGet("/fast.bin", join(dir, "ssh2-down.bin"), cb))
    })
    expect(await fileSha(join(root, "fast.bin"))).toBe(sha256(data))
    expect(await fileSha(join(dir, "ssh2-down.bin"))).toBe(sha256(data))
  })

  it("createWriteStream and createReadStream are byte-exact", async () => {
    const data = randomBytes(1024 * 1024 + 333)
    await writeFile(join(dir, "ssh2-stream.bin"), data)
    const read = await withSsh2(async (sftp) => {
      const writer = sftp.createWriteStream("/stream.bin")
      // "close" comes after the handle is closed: ending the connection earlier would cut that request off
      const written = once(writer, "close")
      await pipeline(fs.createReadStream(join(dir, "ssh2-stream.bin")), writer)
      await written
      const reader = sftp.createReadStream("/stream.bin")
      const chunks: Buffer[] = []
      reader.on("data", (chunk: Buffer) => chunks.push(chunk))
      await once(reader, "close")
      return Buffer.concat(chunks)
    })
    expect(await fileSha(join(root, "stream.bin"))).toBe(sha256(data))
    expect(sha256(read)).toBe(sha256(data))
  })

  it("stat matches the disk", async () => {
    await writeFile(join(root, "stat.txt"), "seven b", { mode: 0o640 })
    const [file, folder] = await withSsh2((sftp) =>
      Promise.all([call<ssh2.Stats>((cb) => sftp.stat("/stat.txt", cb)), call<ssh2.Stats>((cb) => sftp.stat("/ssh2dir", cb))])
    )
    const disk = await stat(join(root, "stat.txt"))
    expect(file.isFile()).toBe(true)
    expect({ size: file.size, mode: file.mode, uid: file.uid, gid: file.gid, mtime: file.mtime }).toEqual({
      size: 7,
      mode: disk.mode,
      uid: disk.uid,
      gid: disk.gid,
      mtime: Math.floor(disk.mtimeMs / 1000)
    })
    expect(folder.isDirectory()).toBe(true)
  })

  it("rename and unlink; a missing file is NO_SUCH_FILE", async () => {
    await writeFile(join(root, "before.txt"), "moving")
    const missing = await withSsh2(async (sftp) => {
      await call((cb) => sftp.rename("/before.txt", "/after.txt", cb))
      expect(await readFile(join(root, "after.txt"), "utf8")).toBe("moving")
      expect(await exists(join(root, "before.txt"))).toBe(false)
      await call((cb) => sftp.unlink("/after.txt", cb))
      return statusOf(call((cb) => sftp.unlink("/after.txt", cb)))
    })
    expect(await exists(join(root, "after.txt"))).toBe(false)
    expect(missing).toBe(STATUS.NO_SUCH_FILE)
  })
})

// ---- path escapes ---------------------------------------------------------------------------

describe("path escapes through a real client are refused", () => {
  const STATUS = ssh2.utils.sftp.STATUS_CODE
  const secret = "outside the root"

  beforeAll(async () => {
    await writeFile(join(outside, "secret.txt"), secret)
    await symlink("/etc", join(root, "to-etc"))
    await symlink(outside, join(root, "to-outside"))
    await symlink(join(outside, "secret.txt"), join(root, "secret-link"))
    await writeFile(join(root, "inside.txt"), "inside")
  })

  it("reads through ../, absolute paths and symlinks fail with a status, reading nothing", async () => {
    const results = await withSsh2((sftp) => {
      const read = (path: string) => statusOf(call<Buffer>((cb) => sftp.readFile(path, cb)))
      return Promise.all([
        read("../outside/secret.txt"),
        read("../../../../../etc/passwd"),
        read("/etc/passwd"),
        read(join(outside, "secret.txt")),
        read("/to-etc/passwd"),
        read("/to-outside/secret.txt"),
        read("/secret-link"),
        statusOf(call((cb) => sftp.readdir("/to-etc", cb))),
        statusOf(call((cb) => sftp.readdir("/..", cb))),
        statusOf(call((cb) => sftp.stat("/to-etc/passwd", cb)))
      ])
    })
    // outside the root by name: looked up inside it, where nothing has that name
    expect(results.slice(0, 4)).toEqual([STATUS.NO_SUCH_FILE, STATUS.NO_SUCH_FILE, STATUS.NO_SUCH_FILE, STATUS.NO_SUCH_FILE])
    // out through a symlink: denied
    expect(results.slice(4, 8)).toEqual([STATUS.PERMISSION_DENIED, STATUS.PERMISSION_DENIED, STATUS.PERMISSION_DENIED, STATUS.PERMISSION_DENIED])
    // "/.." is the root itself
    expect(results[8]).toBe("succeeded")
    expect(results[9]).toBe(STATUS.PERMISSION_DENIED)
  })

  it("realpath never names a place outside the root", async () => {
    const paths = await withSsh2((sftp) => Promise.all(["..", "/../..", "../outside"].map((p) => call<string>((cb) => sftp.realpath(p, cb)))))
    expect(paths).toEqual(["/", "/", "/outside"])
  })

  it("writes, renames and links out of the root fail and change nothing outside", async () => {
    const before = (await readdir(outside)).sort()
    const results = await withSsh2((sftp) => {
      const write = (path: string) => statusOf(call((cb) => sftp.writeFile(path, "escaped", cb)))
      return Promise.all([
        write("/to-outside/new.txt"),
        write("/secret-link"),
        write("/to-etc/effect-ssh-escape"),
        write("../outside/new2.txt"),
        statusOf(call((cb) => sftp.rename("/inside.txt", "/to-outside/moved.txt", cb))),
        statusOf(call((cb) => sftp.rename("/to-outside/secret.txt", "/stolen.txt", cb))),
        statusOf(call((cb) => sftp.mkdir("/to-outside/made", cb))),
        statusOf(call((cb) => sftp.ext_openssh_hardlink("/to-outside/secret.txt", "/hard-secret", cb))),
        statusOf(call((cb) => sftp.setstat("/secret-link", { mode: 0o666 }, cb)))
      ])
    })
    expect(results.filter((r) => r === "succeeded")).toEqual([])
    for (const r of results) expect([STATUS.NO_SUCH_FILE, STATUS.PERMISSION_DENIED]).toContain(r)
    expect((await readdir(outside)).sort()).toEqual(before)
    expect(await readFile(join(outside, "secret.txt"), "utf8")).toBe(secret)
    expect((await stat(join(outside, "secret.txt"))).mode & 0o777).not.toBe(0o666)
    expect(await readFile(join(root, "inside.txt"), "utf8")).toBe("inside")
    expect(await exists("/etc/effect-ssh-escape")).toBe(false)
    expect(await exists(join(root, "stolen.txt"))).toBe(false)
    expect(await exists(join(root, "hard-secret"))).toBe(false)
  })
})

// ---- our own client -------------------------------------------------------------------------

const ours = <A, E>(use: (ssh: SshConnection) => Effect.Effect<A, E, Scope.Scope>) =>
  Effect.runPromise(
    Effect.scoped(
      Effect.flatMap(
        SshClient.connect({
          host: "127.0.0.1",
          port: srv.port,
          username: "tester",
          auth: [SshAuth.password(Redacted.make(PASSWORD))],
          hostVerifier: SshClient.acceptAnyHostKey
        }),
        use
      )
    ).pipe(Effect.timeout("60 seconds"))
  )

describe("our client → our server: sizes byte-exact", () => {
  const sizes = [0, 1, 2, 255, 32 * 1024 - 1, 32 * 1024 + 1, 255 * 1024 + 1, 1_000_003, 4 * 1024 * 1024 + 13]

  it.each(sizes)("%i bytes through writeFile/readFile, fastPut/fastGet and writeSink/readStream", async (size) => {
    const data = randomBytes(size)
    const localUp = join(dir, `ours-${size}.up`)
    const localDown = join(dir, `ours-${size}.down`)
    await writeFile(localUp, data)
    const got = await ours((ssh) =>
      Effect.gen(function* () {
        const sftp = yield* Sftp.make(ssh)
        yield* sftp.writeFile(`/w-${size}`, data)
        const whole = yield* sftp.readFile(`/w-${size}`)
        const put = yield* sftp.fastPut(localUp, `/f-${size}`)
        const fetched = yield* sftp.fastGet(`/f-${size}`, localDown)
        const sunk = yield* Stream.run(Stream.fromIterable(chunksOf(data, 10_007)), sftp.writeSink(`/s-${size}`))
        const streamed = Buffer.concat(Chunk.toArray(yield* Stream.runCollect(sftp.readStream(`/s-${size}`))))
        const attrs = yield* sftp.stat(`/s-${size}`)
        return { whole, put, fetched, sunk, streamed, size: attrs.size }
      })
    )
    const want = sha256(data)
    expect(sha256(got.whole)).toBe(want)
    expect(sha256(got.streamed)).toBe(want)
    expect({ put: got.put, fetched: got.fetched, sunk: got.sunk, size: got.size }).toEqual({ put: size, fetched: size, sunk: size, size })
    for (const name of [`w-${size}`, `f-${size}`, `s-${size}`]) expect(await fileSha(join(root, name))).toBe(want)
    expect(await fileSha(localDown)).toBe(want)
  })
})

function chunksOf(data: Uint8Array, size: number): Array<Uint8Array> {
  const out: Array<Uint8Array> = []
  for (let i = 0; i < data.length; i += size) out.push(data.subarray(i, i + size))
  return out
}

// ---- malformed packets on a raw subsystem channel --------------------------------------------

const u32 = (n: number) => {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n >>> 0)
  return b
}
const packet = (...parts: Array<Uint8Array>) => {
  const body = Buffer.concat(parts)
  return Buffer.concat([u32(body.length), body])
}
const sftpString = (s: string) => Buffer.concat([u32(Buffer.byteLength(s)), Buffer.from(s)])
const byte = (n: number) => Buffer.from([n])
const INIT = packet(byte(1), u32(3))

interface Reply {
  readonly type: number
  readonly id?: number
  readonly code?: number
}

/** Splits what the server sent into packets: type, and for responses the id and a status code. */
function replies(bytes: Uint8Array): Array<Reply> {
  const b = Buffer.from(bytes)
  const out: Array<Reply> = []
  let at = 0
  while (at + 4 <= b.length) {
    const length = b.readUInt32BE(at)
    const body = b.subarray(at + 4, at + 4 + length)
    at += 4 + length
    const type = body[0]!
    if (type === 2) out.push({ type })
    else out.push({ type, id: body.readUInt32BE(1), ...(type === 101 ? { code: body.readUInt32BE(5) } : {}) })
  }
  expect(at).toBe(b.length)
  return out
}

/** Opens an sftp subsystem, writes `bytes`, sends EOF and collects everything until the server closes. */
const rawExchange = (ssh: SshConnection, bytes: Uint8Array) =>
  Effect.gen(function* () {
    const channel = yield* ssh.subsystem("sftp")
    yield* channel.write(bytes)
    yield* channel.end
    const received = yield* Stream.runCollect(channel.stdout).pipe(Effect.timeout("10 seconds"))
    return replies(Buffer.concat(Chunk.toArray(received)))
  })

describe("malformed SFTP packets over a raw subsystem channel", () => {
  const BAD_MESSAGE = 5
  const OP_UNSUPPORTED = 8

  it("a malformed request gets BAD_MESSAGE, an unknown one OP_UNSUPPORTED, and the session goes on", async () => {
    const got = await ours((ssh) =>
      rawExchange(
        ssh,
        Buffer.concat([
          INIT,
          // OPEN whose filename claims 1000 bytes that are not there
          packet(byte(3), u32(7), u32(1000)),
          packet(byte(250), u32(8), Buffer.from("garbage")),
          // STAT with trailing bytes after its path
          packet(byte(17), u32(9), sftpString("/"), Buffer.from([1, 2, 3])),
          // READ with a handle string longer than the packet
          packet(byte(5), u32(10), u32(0xffffffff)),
          // a valid REALPATH: answered, so the session survived all of the above
          packet(byte(16), u32(11), sftpString("."))
        ])
      )
    )
    expect(got[0]).toEqual({ type: 2 })
    const byId = new Map(got.slice(1).map((r) => [r.id, r]))
    expect(byId.get(7)).toEqual({ type: 101, id: 7, code: BAD_MESSAGE })
    expect(byId.get(8)).toEqual({ type: 101, id: 8, code: OP_UNSUPPORTED })
    expect(byId.get(9)?.type).toBe(101)
    expect(byId.get(9)?.code).toBe(BAD_MESSAGE)
    expect(byId.get(10)).toEqual({ type: 101, id: 10, code: BAD_MESSAGE })
    expect(byId.get(11)).toEqual({ type: 104, id: 11 })
    expect(got).toHaveLength(6)
  })

  it("a broken frame ends the channel cleanly: bad lengths, no INIT, a packet too short for an id", async () => {
    const cases = [
      Buffer.concat([INIT, u32(0xffffffff), Buffer.from("xx")]),
      Buffer.concat([INIT, u32(0)]),
      Buffer.concat([INIT, packet(byte(16))]),
      packet(byte(16), u32(1), sftpString("/")),
      Buffer.from("SSH-2.0-not sftp at all\r\n")
    ]
    const got = await ours((ssh) => Effect.forEach(cases, (bytes) => rawExchange(ssh, bytes)))
    expect(got).toEqual([[{ type: 2 }], [{ type: 2 }], [{ type: 2 }], [], []])
  })

  it("a half-sent packet followed by EOF ends the channel", async () => {
    const got = await ours((ssh) => rawExchange(ssh, Buffer.concat([INIT, u32(100), byte(3)])))
    expect(got).toEqual([{ type: 2 }])
  })

  it("the server still serves other channels and connections afterwards", async () => {
    const [sameConnection, fresh] = await Promise.all([
      ours((ssh) =>
        Effect.gen(function* () {
          yield* rawExchange(ssh, Buffer.concat([INIT, u32(0xffffffff)]))
          const sftp = yield* Sftp.make(ssh)
          return yield* sftp.realpath(".")
        })
      ),
      ours((ssh) => Effect.flatMap(Sftp.make(ssh), (sftp) => sftp.readFile("/inside.txt")))
    ])
    expect(sameConnection).toBe("/")
    expect(Buffer.from(fresh).toString()).toBe("inside")
  })
})
