//! Code shared by the session programs (`ws_node`, `ws_client`) and their tests.
