/**
 * The kafka_go tests' fixture builder: test/fixtures/go/kafkago (one program, `-mode produce` serving HTTP requests
 * that write through a kafka.Writer, `-mode consume` serving requests that read through a kafka.Reader), per Go
 * version, built against the kafka-go release its go.mod pins (v0.4.51).
 */
import { buildGoFixture } from "./GoFixture.ts"

/** The kafka-go release the fixture's go.mod pins. */
export const KAFKA_GO_VERSION = "v0.4.51"

/**
 * Builds the fixture with Go `version` (test/.cache/kafkago/<version>/kafkago; `kafkago-stripped` with `stripped`) and
 * returns the binary's path. `kafkaGo` (e.g. "v0.4.30") builds it against that kafka-go release instead of the pinned
 * one (`kafkago-<kafkaGo>`).
 */
export const buildKafkaGo = (
  version: string,
  options: { readonly stripped?: boolean; readonly kafkaGo?: string } = {}
): string =>
  buildGoFixture("kafkago", version, {
    ...(options.stripped === undefined ? {} : { stripped: options.stripped }),
    ...(options.kafkaGo === undefined ?
      {} :
      { release: { tag: options.kafkaGo, get: [`github.com/segmentio/kafka-go@${options.kafkaGo}`] } })
  })
