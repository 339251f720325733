/**
 * What the database client probes share: the stable `db.client.operation.duration` histogram of the database
 * semantic conventions, with their advised bucket boundaries (seconds).
 */
import * as Instruments from "../../probe/Instruments.ts"

/** `db.client.operation.duration`: what every database client probe declares. */
export const operationDuration = Instruments.histogram("db.client.operation.duration", {
  unit: "s",
  description: "Duration of database client operations.",
  boundaries: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10]
})
