// Package catalog is what the shop's two services agree on: the inventory gRPC service (defined without protoc: a
// hand-written grpc.ServiceDesc over messages that ship compiled in the protobuf module, with grpc's default proto
// codec) and the Kafka topic orders are announced on.
package catalog

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Topic carries one message per placed order, keyed by the item.
const Topic = "orders"

// ReserveMethod is the inventory's one RPC: reserve one unit of an item (StringValue) and answer the stock left
// (Int32Value), or NotFound.
const ReserveMethod = "/probescope.example.Inventory/Reserve"

// Reserver is what the inventory server implements.
type Reserver interface {
	Reserve(ctx context.Context, item string) (int32, error)
}

func reserveHandler(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
	in := new(wrapperspb.StringValue)
	if err := dec(in); err != nil {
		return nil, err
	}
	left, err := srv.(Reserver).Reserve(ctx, in.GetValue())
	if err != nil {
		return nil, err
	}
	return wrapperspb.Int32(left), nil
}

// ServiceDesc registers a Reserver on a grpc.Server.
var ServiceDesc = grpc.ServiceDesc{
	ServiceName: "probescope.example.Inventory",
	HandlerType: (*Reserver)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Reserve", Handler: reserveHandler}},
}

// Reserve calls the inventory over cc.
func Reserve(ctx context.Context, cc *grpc.ClientConn, item string) (int32, error) {
	out := new(wrapperspb.Int32Value)
	if err := cc.Invoke(ctx, ReserveMethod, wrapperspb.String(item), out); err != nil {
		return 0, err
	}
	return out.GetValue(), nil
}
