//! Messages from the broker in the client's frames: a method, a content header and body
//! frames no larger than the frame-max the client tuned, each its own WebSocket message.

use bytes::Bytes;
use protocol_amqp::protocol::basic;
use protocol_amqp::{encode_content, encode_method, AMQPClass, ShortString};
use rabbitmq_pool::lapin::message::Delivery;

pub fn with_content(channel: u16, method: AMQPClass, d: &Delivery, frame_max: u32) -> Vec<Bytes> {
    let mut frames = vec![encode_method(channel, &method)];
    frames.extend(encode_content(
        channel,
        60,
        &d.properties,
        &d.data,
        frame_max,
    ));
    frames
}

pub fn deliver(
    channel: u16,
    consumer_tag: &ShortString,
    d: &Delivery,
    frame_max: u32,
) -> Vec<Bytes> {
    let method = AMQPClass::Basic(basic::AMQPMethod::Deliver(basic::Deliver {
        consumer_tag: consumer_tag.clone(),
        delivery_tag: d.delivery_tag,
        redelivered: d.redelivered,
        exchange: d.exchange.clone(),
        routing_key: d.routing_key.clone(),
    }));
    with_content(channel, method, d, frame_max)
}

pub fn get_ok(channel: u16, d: &Delivery, message_count: u32, frame_max: u32) -> Vec<Bytes> {
    let method = AMQPClass::Basic(basic::AMQPMethod::GetOk(basic::GetOk {
        delivery_tag: d.delivery_tag,
        redelivered: d.redelivered,
        exchange: d.exchange.clone(),
        routing_key: d.routing_key.clone(),
        message_count,
    }));
    with_content(channel, method, d, frame_max)
}

pub fn returned(
    channel: u16,
    reply_code: u16,
    reply_text: &ShortString,
    d: &Delivery,
    frame_max: u32,
) -> Vec<Bytes> {
    let method = AMQPClass::Basic(basic::AMQPMethod::Return(basic::Return {
        reply_code,
        reply_text: reply_text.clone(),
        exchange: d.exchange.clone(),
        routing_key: d.routing_key.clone(),
    }));
    with_content(channel, method, d, frame_max)
}
