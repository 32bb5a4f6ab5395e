// A Go caller of the API, built only from code generated from proto/ with buf.gen.go.yaml
// (protoc-gen-go messages, protoc-gen-go-grpc stubs) and grpc-go over HTTP/2 cleartext.
//
// Usage: client HOST:PORT API_KEY ORG_ID ORIGIN_ID INPUT_PATH
//
// Creates a job (one 240p H.264 mp4 of INPUT_PATH on the origin), watches it until it ends,
// gets it, and prints one JSON object with what it saw (test/integration/go-client.test.ts).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	renditionv1 "example.com/yourapp/gen-go/rendition/v1"
)

type event struct {
	Event    string `json:"event"`
	Status   string `json:"status"`
	Progress int32  `json:"progress"`
}

func main() {
	if len(os.Args) != 6 {
		fmt.Fprintln(os.Stderr, "usage: client HOST:PORT API_KEY ORG_ID ORIGIN_ID INPUT_PATH")
		os.Exit(2)
	}
	address, apiKey, orgID, originID, inputPath := os.Args[1], os.Args[2], os.Args[3], os.Args[4], os.Args[5]

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// Every call carries the API key and the organization.
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+apiKey, "x-organization-id", orgID)

	// Plain-text HTTP/2 (h2c) to the same port that serves Connect and gRPC-Web; use TLS
	// credentials (google.golang.org/grpc/credentials) in front of a real deployment.
	conn, err := grpc.DialContext(ctx, address, grpc.WithInsecure(), grpc.WithBlock())
	check(err)
	defer conn.Close()
	jobs := renditionv1.NewJobServiceClient(conn)

	created, err := jobs.Create(ctx, &renditionv1.JobServiceCreateRequest{
		InputOriginId:  originID,
		InputPath:      inputPath,
		OutputOriginId: originID,
		Outputs: []*renditionv1.OutputSpec{{
			Type:  renditionv1.OutputType_OUTPUT_TYPE_MP4,
			Video: []*renditionv1.VideoVariant{{Codec: renditionv1.VideoCodec_VIDEO_CODEC_H264, Height: 240}},
		}},
		Metadata: map[string]string{"caller": "go"},
	})
	check(err)
	id := created.GetJob().GetId()

	// Watch sends a snapshot, then progress and status changes; it ends after COMPLETED.
	stream, err := jobs.Watch(ctx, &renditionv1.JobServiceWatchRequest{Id: id})
	check(err)
	var events []event
	for {
		message, err := stream.Recv()
		if err == io.EOF {
			break
		}
		check(err)
		events = append(events, event{message.GetEvent().String(), message.GetJob().GetStatus().String(), message.GetJob().GetProgress()})
	}

	got, err := jobs.Get(ctx, &renditionv1.JobServiceGetRequest{Id: id})
	check(err)
	job := got.GetJob()

	// Errors carry a gRPC status code and message naming the fields at fault.
	_, err = jobs.Get(ctx, &renditionv1.JobServiceGetRequest{})
	invalid := status.Convert(err)

	output := job.GetOutputs()[0]
	check(json.NewEncoder(os.Stdout).Encode(map[string]interface{}{
		"job_id":         id,
		"created_status": created.GetJob().GetStatus().String(),
		"events":         events,
		"status":         job.GetStatus().String(),
		"progress":       job.GetProgress(),
		"metadata":       job.GetMetadata(),
		"output_status":  output.GetStatus().String(),
		"output_path":    output.GetPath(),
		"output_url":     output.GetOutputUrl(),
		"output_bytes":   output.GetFileSizeBytes(),
		"invalid":        map[string]string{"code": invalid.Code().String(), "message": invalid.Message()},
	}))
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
