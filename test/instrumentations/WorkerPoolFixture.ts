/**
 * The context-parent tests' fixture builder: test/fixtures/go/workerpool (an HTTP and gRPC server whose handlers
 * hand their context to worker goroutines over a channel), per Go version. Kept beside its tests rather than in
 * fixtures.ts, which several helpers edit at once.
 */
import { buildGoFixture } from "./GoFixture.ts"

/**
 * Builds the fixture with Go `version` (test/.cache/workerpool/<version>/workerpool; `workerpool-stripped` with
 * `stripped`) and returns the binary's path. It pins grpc v1.83.2, the newest release the grpc probe supports that
 * still builds with Go 1.25.
 */
export const buildWorkerPool = (version: string, options: { readonly stripped?: boolean } = {}): string =>
  buildGoFixture("workerpool", version, options)
