// Package simulator is sanitel's device simulator: a made-up district of
// waste bins, public toilets, rural toilets and drinking-water probes that
// report over MQTT the way real devices do, for sanitel's tests, demo and
// benchmarks.
//
// Generate makes up a registry. A Generator turns devices into the stream
// of MQTT messages they send, in simulated-time order, deterministic for a
// seed: the same devices, options and seed give a byte-identical stream.
// Each device's physics (bins filling with the day and emptied by the
// collection rounds, toilet visitors and ammonia, septic tanks filling over
// weeks until emptied, water quality with rain and chlorine incidents) is a
// pure function of the seed, its id and the simulated time. Faults (see
// ParseFaults) are drawn from a separate random stream, so turning them on
// does not change what the district does, and every message says which
// fault it carries.
//
// Run publishes the stream to a broker. It speaks MQTT 3.1.1 itself, over
// a few connections, batching writes and acknowledgements, so that it
// costs less CPU than the broker it loads. Simulated time never runs ahead
// of the wall clock: an accelerated run starts its clock in the past
// (PlanStart, StartFor) and a message whose simulated time has not come yet
// waits for it.
//
// Topics are those of the contract: {root}/{kind}/{id}/telemetry, …/event
// and …/status (retained), and ChirpStack v4 uplinks on
// application/{app_id}/device/{dev_eui}/event/up for LoRaWAN devices that
// publish through ChirpStack.
package simulator
