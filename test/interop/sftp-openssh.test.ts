/**
 * Our SFTP client against OpenSSH's sftp server (internal-sftp of a private sshd): every
 * operation and every extension it advertises, checked against the local filesystem the
 * server works on; byte-exact transfers of awkward sizes; a 1 GiB streamed download hashed
 * on the fly; and connections killed mid-transfer.
 */
import { createHash, randomBytes } from "node:crypto"
import { createReadStream } from "node:fs"
import { chmod, chown, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, truncate, writeFile } from "node:fs/promises"
import { connect as netConnect } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { afterAll, beforeAll, expect, it } from "vitest"
import { Extension, FileType } from "../../src/protocol/sftp/constants.js"
import { parsePrivateKey } from "../../src/protocol/keys/privateKey.js"
import * as Sftp from "../../src/Sftp.js"
import * as SshAuth from "../../src/SshAuth.js"
import * as SshClient from "../../src/SshClient.js"
import type { ConnectOptions } from "../../src/SshClient.js"
import type { SftpError } from "../../src/SshError.js"
import { generateKey, run } from "../support/openssh.js"
import { describeWithPeers, testUserRequirement } from "../support/peers.js"
import { startSshd } from "../support/sshd.js"
import type { Sshd } from "../support/sshd.js"

const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex")
const fileSha256 = (path: string) =>
  new Promise<string>((resolve, reject) => {
    const h = createHash("sha256")
    createReadStream(path).on("data", (d) => h.update(d)).on("end", () => resolve(h.digest("hex"))).on("error", reject)
  })

/** Every extension we implement; OpenSSH 9.2 advertises all of them. */
const allExtensions = Object.values(Extension)

describeWithPeers(["sshd", "ssh-keygen", testUserRequirement], "SFTP client ↔ OpenSSH sftp-server", () => {
  let sshd: Sshd
  let keyDir: string
  let dir: string
  let uid: number
  let gid: number
  let options: ConnectOptions

  beforeAll(async () => {
    keyDir = await mkdtemp(join(tmpdir(), "effect-ssh-sftp-keys-"))
    const key = await generateKey(join(keyDir, "id_ed25519"), "ed25519")
    sshd = await startSshd({ authorizedKeys: [key.publicLine], hostKeys: ["ed25519"] })
    // the server runs as the login user: the work dir must be theirs
    dir = await mkdtemp(join(tmpdir(), "effect-ssh-sftp-"))
    await chmod(dir, 0o755)
    const owner = (await import("node:child_process")).execFileSync("id", ["-u", sshd.user]).toString().trim()
    const group = (await import("node:child_process")).execFileSync("id", ["-g", sshd.user]).toString().trim()
    uid = Number(owner)
    gid = Number(group)
    await chown(dir, uid, gid)
    options = {
      host: sshd.host,
      port: sshd.port,
      username: sshd.user,
      auth: [SshAuth.privateKey(parsePrivateKey(await readFile(key.privatePath)))],
      hostVerifier: (k) => sshd.hostKeys.some((h) => h.fingerprint === k.fingerprint)
    }
  }, 120_000)

  afterAll(async () => {
    await sshd?.stop()
    await rm(keyDir, { recursive: true, force: true })
    await rm(dir, { recursive: true, force: true })
  })

  const withSftp = <A, E>(use: (sftp: Sftp.Sftp) => Effect.Effect<A, E, Scope.Scope>, extra: Partial<ConnectOptions> = {}) =>
    Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const ssh = yield* SshClient.connect({ ...options, ...extra })
          return yield* use(yield* Sftp.make(ssh))
        })
      )
    )

  /** Writes a file the server's user can read and write. */
  const localFile = async (name: string, data: Uint8Array) => {
    const path = join(dir, name)
    await writeFile(path, data)
    await chown(path, uid, gid)
    return path
  }

  it("advertises and uses every OpenSSH extension, honouring limits@openssh.com", async () => {
    const r = await withSftp((sftp) => Effect.succeed({ extensions: sftp.extensions, limits: sftp.limits, chunk: sftp.chunkSize, supported: allExtensions.filter(sftp.supports) }))
    expect(r.supported).toEqual(allExtensions)
    expect(r.limits.maxPacketLength).toBe(256 * 1024)
    expect(r.limits.maxReadLength).toBe(256 * 1024 - 1024)
    expect(r.chunk).toBe(256 * 1024 - 1024)
  })

  it("does every v3 operation as the local filesystem sees it", async () => {
    const base = join(dir, "ops")
    const r = await withSftp((sftp) =>
      Effect.gen(function* () {
        yield* sftp.mkdir(base, { mode: 0o750 })
        yield* sftp.writeFile(`${base}/a.txt`, "hello sftp", { mode: 0o640 })
        const h = yield* sftp.open(`${base}/a.txt`, "r+")
        yield* sftp.write(h, 6, new TextEncoder().encode("SFTP"))
        const part = yield* sftp.read(h, 6, 4)
        const eof = yield* sftp.read(h, 1000, 10)
        const fstat = yield* sftp.fstat(h)
        yield* sftp.fsetstat(h, { mode: 0o600 })
        yield* sftp.close(h)
        yield* sftp.setstat(`${base}/a.txt`, { atime: 1_600_000_000, mtime: 1_600_000_001 })
        yield* sftp.symlink("a.txt", `${base}/link`)
        yield* sftp.rename(`${base}/a.txt`, `${base}/b.txt`)
        const renameOver = yield* Effect.flip(sftp.rename(`${base}/b.txt`, `${base}/link`))
        yield* sftp.mkdir(`${base}/empty`)
        yield* sftp.rmdir(`${base}/empty`)
        yield* sftp.writeFile(`${base}/gone`, "x")
        yield* sftp.remove(`${base}/gone`)
        return {
          part: new TextDecoder().decode(part),
          eof: eof.length,
          fstat,
          renameOver,
          stat: yield* sftp.stat(`${base}/b.txt`),
          lstat: yield* sftp.lstat(`${base}/link`),
          link: yield* sftp.readlink(`${base}/link`),
          real: yield* sftp.realpath(`${base}/../ops/./b.txt`),
          names: (yield* sftp.list(base)).map((e) => [e.filename, e.longname.slice(0, 10), e.attrs.size]).sort(),
          missing: yield* Effect.flip(sftp.stat(`${base}/nope`)),
          denied: yield* Effect.flip(sftp.open("/root/.forbidden", "w"))
        }
      })
    )
    const local = await stat(join(base, "b.txt"))
    expect(r.part).toBe("SFTP")
    expect(r.eof).toBe(0)
    expect(r.fstat.size).toBe(10)
    expect(r.renameOver.reason).toBe("failure")
    expect(await readFile(join(base, "b.txt"), "utf8")).toBe("hello SFTP")
    expect(r.stat).toMatchObject({ size: local.size, uid: local.uid, gid: local.gid, mode: local.mode, mtime: 1_600_000_001, atime: 1_600_000_000 })
    expect(local.mode & 0o7777).toBe(0o600)
    expect((await stat(base)).mode & 0o7777).toBe(0o750)
    expect(r.lstat.mode! & FileType.MASK).toBe(FileType.SYMLINK)
    expect(r.link).toBe(await readlink(join(base, "link")))
    expect(r.real).toBe(join(base, "b.txt"))
    expect(r.names.map((n) => n[0])).toEqual((await readdir(base)).sort())
    expect(r.names.find((n) => n[0] === "b.txt")).toEqual(["b.txt", "-rw-------", 10])
    expect(r.missing).toMatchObject({ reason: "no-such-file", status: 2, operation: "stat", path: `${base}/nope` })
    expect(r.denied).toMatchObject({ reason: "permission-denied", status: 3, operation: "open" })
  })

  it("uses each extension with the results the local filesystem shows", async () => {
    const base = join(dir, "ext")
    await mkdir(base)
    await chown(base, uid, gid)
    await localFile("ext/src", Uint8Array.from(randomBytes(100_000)))
    const r = await withSftp((sftp) =>
      Effect.gen(function* () {
        yield* sftp.writeFile(`${base}/other`, "other")
        yield* sftp.posixRename(`${base}/other`, `${base}/renamed`)
        yield* sftp.writeFile(`${base}/other2`, "second")
        yield* sftp.posixRename(`${base}/other2`, `${base}/renamed`)
        yield* sftp.hardlink(`${base}/src`, `${base}/hard`)
        yield* sftp.symlink("src", `${base}/sym`)
        yield* sftp.lsetstat(`${base}/sym`, { atime: 1_500_000_000, mtime: 1_500_000_000 })
        const src = yield* sftp.open(`${base}/src`, "r")
        const dst = yield* sftp.open(`${base}/copy`, "w")
        yield* sftp.copyData(src, 10, 0, dst, 0)
        yield* sftp.fsync(dst)
        const fvfs = yield* sftp.fstatvfs(dst)
        yield* Effect.all([sftp.close(src), sftp.close(dst)])
        return {
          vfs: yield* sftp.statvfs(base),
          fvfs,
          home: yield* sftp.homeDirectory(),
          homeByName: yield* sftp.homeDirectory(sshd.user),
          expanded: yield* sftp.expandPath("~"),
          names: yield* sftp.usersGroupsById([0, uid, 4_000_000], [0, gid])
        }
      })
    )
    expect(await readFile(join(base, "renamed"), "utf8")).toBe("second")
    expect((await stat(join(base, "hard"))).ino).toBe((await stat(join(base, "src"))).ino)
    expect((await lstat(join(base, "sym"))).mtimeMs).toBe(1_500_000_000_000)
    expect(sha256(await readFile(join(base, "copy")))).toBe(sha256((await readFile(join(base, "src"))).subarray(10)))
    const df = await import("node:fs/promises").then((m) => m.statfs(base))
    expect(r.vfs.bsize).toBe(df.bsize)
    expect(r.vfs.blocks).toBe(df.blocks)
    expect(r.fvfs.blocks).toBe(df.blocks)
    const passwdHome = (await readFile("/etc/passwd", "utf8")).split("\n").find((l) => l.startsWith(`${sshd.user}:`))?.split(":")[5]
    expect(r.home).toBe(passwdHome)
    expect(r.homeByName).toBe(passwdHome)
    expect(r.expanded).toBe(passwdHome)
    expect(r.names.users[0]).toBe("root")
    expect(r.names.users[1]).toBe(sshd.user)
    expect(r.names.users[2]).toBe("")
    expect(r.names.groups[0]).toBe("root")
  })

  it("transfers 0 bytes, 1 byte and odd sizes byte-exact every way", async () => {
    const sizes = [0, 1, 7, 32 * 1024 + 1, 1024 * 1024 + 7, 3 * 1024 * 1024 + 123]
    for (const size of sizes) {
      const data = Uint8Array.from(randomBytes(size))
      const src = await localFile(`src-${size}`, data)
      const want = sha256(data)
      const remote = (how: string) => join(dir, `${how}-${size}`)
      const got = await withSftp((sftp) =>
        Effect.gen(function* () {
          yield* sftp.fastPut(src, remote("fastput"))
          yield* Stream.run(Stream.fromIterable(chunks(data, 10_000)), sftp.writeSink(remote("sink")))
          yield* sftp.fastGet(src, join(dir, `fastget-${size}`))
          const streamed = yield* Stream.runCollect(sftp.readStream(src))
          const ranged = yield* Stream.runCollect(sftp.readStream(src, { start: Math.floor(size / 3), end: size - 1 }))
          return { streamed: Buffer.concat(Chunk.toArray(streamed)), ranged: Buffer.concat(Chunk.toArray(ranged)) }
        })
      )
      expect(await fileSha256(remote("fastput")), `fastPut ${size}`).toBe(want)
      expect(await fileSha256(remote("sink")), `writeSink ${size}`).toBe(want)
      expect(await fileSha256(join(dir, `fastget-${size}`)), `fastGet ${size}`).toBe(want)
      expect(sha256(got.streamed), `readStream ${size}`).toBe(want)
      expect(sha256(got.ranged), `range ${size}`).toBe(sha256(data.subarray(Math.floor(size / 3), Math.max(Math.floor(size / 3), size - 1))))
    }
  }, 120_000)

  it("recycles fastGet's received memory without corrupting it, or the chunks a concurrent readStream holds", async () => {
    // fastGet hands its received memory back for the next packets once it is on disk; a
    // readStream on the same session keeps its chunks, whose memory must never be taken back
    const fast = Uint8Array.from(randomBytes(48 * 1024 * 1024))
    const held = Uint8Array.from(randomBytes(12 * 1024 * 1024 + 5))
    const fastSrc = await localFile("recycle-fast", fast)
    const heldSrc = await localFile("recycle-held", held)
    const got = await withSftp((sftp) =>
      Effect.all([sftp.fastGet(fastSrc, join(dir, "recycle-fast-got")), Stream.runCollect(sftp.readStream(heldSrc))], {
        concurrency: 2
      })
    )
    expect(got[0]).toBe(fast.length)
    expect(await fileSha256(join(dir, "recycle-fast-got"))).toBe(sha256(fast))
    // hashed only now, after every slab fastGet gave back has been written over many times
    expect(sha256(Buffer.concat(Chunk.toArray(got[1])))).toBe(sha256(held))
  }, 60_000)

  it("streams 1 GiB to a hash without touching the local disk", async () => {
    const big = join(dir, "gigabyte")
    await writeFile(big, "")
    await truncate(big, 1024 ** 3)
    await chown(big, uid, gid)
    // a sparse file of zeros: the server reads it fast, the hash is known
    const zeros = new Uint8Array(1024 * 1024)
    const expected = createHash("sha256")
    for (let i = 0; i < 1024; i++) expected.update(zeros)
    const started = performance.now()
    const got = await withSftp((sftp) =>
      sftp.readStream(big).pipe(
        Stream.runFold({ hash: createHash("sha256"), bytes: 0 }, (acc, chunk) => {
          acc.hash.update(chunk)
          acc.bytes += chunk.length
          return acc
        })
      )
    )
    const seconds = (performance.now() - started) / 1000
    expect(got.bytes).toBe(1024 ** 3)
    expect(got.hash.digest("hex")).toBe(expected.digest("hex"))
    console.log(`sftp 1 GiB streamed download: ${seconds.toFixed(1)} s (${(1024 / seconds).toFixed(0)} MiB/s)`)
  }, 60_000)

  it("runs `effect-ssh sftp` get, put and ls from the command line", async () => {
    const data = Uint8Array.from(randomBytes(300_000))
    const src = await localFile("cli-src", data)
    const cli = (...args: Array<string>) =>
      run(process.execPath, [
        "--import",
        "tsx",
        "src/cli/main.ts",
        "sftp",
        "-p",
        String(sshd.port),
        "-i",
        join(keyDir, "id_ed25519"),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        `UserKnownHostsFile=${join(keyDir, "known_hosts")}`,
        `${sshd.user}@127.0.0.1`,
        ...args
      ])
    const got = await cli("get", src, join(keyDir, "cli-got"))
    expect(got.exitCode, got.stderr).toBe(0)
    expect(sha256(await readFile(join(keyDir, "cli-got")))).toBe(sha256(data))
    const put = await cli("put", join(keyDir, "cli-got"), join(dir, "cli-put"))
    expect(put.exitCode, put.stderr).toBe(0)
    expect(sha256(await readFile(join(dir, "cli-put")))).toBe(sha256(data))
    const ls = await cli("ls", dir)
    expect(ls.exitCode).toBe(0)
    expect(ls.stdout).toMatch(/^-rw\S* .* 300000 .* cli-put$/m)
    // not a terminal: no progress bar
    expect(got.stderr).not.toContain("%")
    const missing = await cli("get", join(dir, "nope"), join(keyDir, "x"))
    expect(missing.exitCode).toBe(1)
    expect(missing.stderr).toContain(`sftp open ${join(dir, "nope")}: No such file`)
  }, 60_000)

  it("fails a download with a typed error when the connection is killed mid-transfer, and never reports it complete", async () => {
    const data = Uint8Array.from(randomBytes(32 * 1024 * 1024))
    const src = await localFile("kill-src", data)
    for (const how of ["fastGet", "readStream", "fastPut", "writeSink"] as const) {
      const socket = netConnect({ host: sshd.host, port: sshd.port })
      await new Promise((resolve, reject) => socket.once("connect", resolve).once("error", reject))
      let progressed = 0
      const kill = (n: number) => {
        progressed = n
        if (n > 4 * 1024 * 1024 && !socket.destroyed) socket.destroy()
      }
      const exit = await Effect.runPromiseExit(
        Effect.scoped(
          Effect.gen(function* () {
            const ssh = yield* SshClient.connect({ ...options, sock: socket })
            const sftp = yield* Sftp.make(ssh)
            switch (how) {
              case "fastGet":
                return yield* sftp.fastGet(src, join(dir, "kill-dst"), { onProgress: kill })
              case "fastPut":
                return yield* sftp.fastPut(src, join(dir, "kill-up"), { onProgress: kill })
              case "readStream":
                return yield* Stream.runFold(sftp.readStream(src), 0, (n, c) => {
                  kill(n + c.length)
                  return n + c.length
                })
              case "writeSink":
                return yield* Stream.run(
                  Stream.fromIterable(chunks(data, 65536)).pipe(Stream.tap((c) => Effect.sync(() => kill(progressed + c.length)))),
                  sftp.writeSink(join(dir, "kill-sink"))
                )
            }
          })
        )
      )
      expect(Exit.isFailure(exit), `${how} must not succeed`).toBe(true)
      if (Exit.isFailure(exit)) {
        const error = exit.cause._tag === "Fail" ? (exit.cause.error as SftpError) : undefined
        expect(error, `${how}: ${String(exit.cause)}`).toMatchObject({ _tag: "SftpError", reason: "connection-lost", status: 7 })
      }
      expect(progressed).toBeLessThan(data.length)
    }
  }, 120_000)
})

function chunks(data: Uint8Array, size: number): Array<Uint8Array> {
  const out: Array<Uint8Array> = []
  for (let i = 0; i < data.length; i += size) out.push(data.subarray(i, i + size))
  return out
}
