/**
 * The go_redis tests' fixture builder: test/fixtures/go/goredis (an HTTP server whose handlers run go-redis v9
 * commands), per Go version and go-redis release. Kept beside the go_redis tests rather than in fixtures.ts, which
 * several helpers edit at once.
 */
import { buildGoFixture } from "./GoFixture.ts"

/**
 * Builds the fixture with Go `version` (test/.cache/goredis/<version>/goredis; `goredis-stripped` with `stripped`)
 * and returns the binary's path. `goRedis` (e.g. "9.0.5") builds it against that go-redis release instead of the one
 * its go.mod pins (`goredis-<goRedis>`).
 */
export const buildGoRedis = (
  version: string,
  options: { readonly stripped?: boolean; readonly goRedis?: string } = {}
): string =>
  buildGoFixture("goredis", version, {
    ...(options.stripped === undefined ? {} : { stripped: options.stripped }),
    ...(options.goRedis === undefined ?
      {} :
      { release: { tag: options.goRedis, get: [`github.com/redis/go-redis/v9@v${options.goRedis}`] } })
  })
