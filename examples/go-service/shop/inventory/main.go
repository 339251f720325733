// Command inventory is the shop's stock service in the probescope example: a gRPC server whose Reserve looks the item
// up in Redis first and in a SQLite database (through database/sql) on a miss, and a Kafka consumer of the orders
// topic (the "shipping" group) that records each order it reads.
//
//	inventory -grpc 127.0.0.1:0 -db FILE -redis 127.0.0.1:PORT -kafka 127.0.0.1:PORT
//
// It prints "listening on <addr>" once the gRPC server listens and the topic exists.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"log"
	"net"
	"os"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	_ "modernc.org/sqlite"

	"probescope.example/shop/catalog"
)

type inventory struct {
	db    *sql.DB
	cache *redis.Client
}

// Reserve takes one unit of item: the cached count when Redis has it, else the database's.
func (inv *inventory) Reserve(ctx context.Context, item string) (int32, error) {
	key := "stock:" + item
	n, err := inv.cache.Get(ctx, key).Int()
	if errors.Is(err, redis.Nil) {
		err = inv.db.QueryRowContext(ctx, "SELECT stock FROM items WHERE name = ?", item).Scan(&n)
		if errors.Is(err, sql.ErrNoRows) {
			return 0, status.Errorf(codes.NotFound, "no item %q", item)
		}
	}
	if err != nil {
		return 0, status.Error(codes.Internal, err.Error())
	}
	if n <= 0 {
		return 0, status.Errorf(codes.NotFound, "%q is out of stock", item)
	}
	if err := inv.cache.Set(ctx, key, n-1, time.Minute).Err(); err != nil {
		return 0, status.Error(codes.Internal, err.Error())
	}
	return int32(n - 1), nil
}

func main() {
	addr := flag.String("grpc", "127.0.0.1:9090", "gRPC listen address (loopback only)")
	dbPath := flag.String("db", "inventory.db", "SQLite database file")
	redisAddr := flag.String("redis", "127.0.0.1:6379", "Redis address")
	broker := flag.String("kafka", "127.0.0.1:9092", "Kafka bootstrap address")
	flag.Parse()
	log.SetFlags(0)

	db, err := sql.Open("sqlite", *dbPath)
	if err != nil {
		log.Fatal(err)
	}
	for _, stmt := range []string{
		"CREATE TABLE IF NOT EXISTS items (name TEXT PRIMARY KEY, stock INTEGER NOT NULL)",
		"INSERT OR REPLACE INTO items VALUES ('widget', 3), ('gadget', 0)",
		"CREATE TABLE IF NOT EXISTS shipments (item TEXT NOT NULL, body TEXT NOT NULL)",
	} {
		if _, err := db.Exec(stmt); err != nil {
			log.Fatal(err)
		}
	}
	inv := &inventory{db: db, cache: redis.NewClient(&redis.Options{Addr: *redisAddr})}

	if err := createTopic(*broker); err != nil {
		log.Fatal(err)
	}
	go ship(*broker, db)

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	s := grpc.NewServer()
	s.RegisterService(&catalog.ServiceDesc, inv)
	os.Stdout.WriteString("listening on " + ln.Addr().String() + "\n")
	log.Fatal(s.Serve(ln))
}

// createTopic makes the orders topic on the (single) broker, so the consumer group has a partition to join. Through
// kafka.Client, which negotiates the request's version with the broker; an existing topic is fine.
func createTopic(broker string) error {
	client := &kafka.Client{Addr: kafka.TCP(broker), Timeout: 10 * time.Second}
	res, err := client.CreateTopics(context.Background(), &kafka.CreateTopicsRequest{
		Topics: []kafka.TopicConfig{{Topic: catalog.Topic, NumPartitions: 1, ReplicationFactor: 1}},
	})
	if err == nil {
		err = res.Errors[catalog.Topic]
	}
	if errors.Is(err, kafka.TopicAlreadyExists) {
		return nil
	}
	return err
}

// ship consumes the orders topic and records a shipment per order.
func ship(broker string, db *sql.DB) {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: []string{broker},
		GroupID: "shipping",
		Topic:   catalog.Topic,
		MaxWait: 100 * time.Millisecond,
	})
	for {
		m, err := r.ReadMessage(context.Background())
		if err != nil {
			log.Printf("shipping: %v", err)
			return
		}
		if _, err := db.Exec("INSERT INTO shipments VALUES (?, ?)", string(m.Key), string(m.Value)); err != nil {
			log.Printf("shipping: %v", err)
			continue
		}
		os.Stdout.WriteString("shipped " + string(m.Key) + "\n")
	}
}
