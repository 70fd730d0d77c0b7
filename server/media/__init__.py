"""Media on the node that owns a witness session: WebRTC legs, relay, recording, stills."""
