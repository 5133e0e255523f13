#pragma once
// dcp dht: structured overlays (Chord, Pastry, Kademlia, CAN, Tapestry) behind one Router
// concept, a replicated key-value store over any of them, and Scribe's
// multicast trees over Pastry.
#include "dcp/dht/can.hpp"
#include "dcp/dht/chord.hpp"
#include "dcp/dht/contact.hpp"
#include "dcp/dht/error.hpp"
#include "dcp/dht/id_binding.hpp"
#include "dcp/dht/kademlia.hpp"
#include "dcp/dht/membership_contacts.hpp"
#include "dcp/dht/pastry.hpp"
#include "dcp/dht/router.hpp"
#include "dcp/dht/scribe.hpp"
#include "dcp/dht/scribe_error.hpp"
#include "dcp/dht/signature.hpp"  // signed values; the Ed25519 verifier is dcp/dht/ed25519.hpp (libcrypto)
#include "dcp/dht/store.hpp"
#include "dcp/dht/tapestry.hpp"
