//! The bridges this gateway is built with. Adding a bridge means adding its factory here and
//! nothing else in the gateway.

use bridge_api::BridgeFactory;

pub fn builtin_bridges() -> Vec<Box<dyn BridgeFactory>> {
    vec![
        Box::new(bridge_echo::EchoFactory),
        Box::new(bridge_tcp::TcpFactory),
        Box::new(bridge_stomp::StompFactory),
        Box::new(bridge_xmpp::XmppFactory),
        Box::new(bridge_amqp::AmqpFactory),
    ]
}
