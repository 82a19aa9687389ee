package tensorflow

// TensorFlow's C API (tensorflow/c/c_api.h), reached through dlopen and
// dlsym so that the worker builds without TensorFlow's headers or library
// and runs where they are missing. The few types used are declared here as
// the header declares them: opaque pointers, TF_Output and TF_TString (24
// bytes, handled only through TF_String* calls).

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct TF_Status TF_Status;
typedef struct TF_Graph TF_Graph;
typedef struct TF_Operation TF_Operation;
typedef struct TF_Session TF_Session;
typedef struct TF_SessionOptions TF_SessionOptions;
typedef struct TF_Tensor TF_Tensor;
typedef struct TF_Buffer {
  const void* data;
  size_t length;
  void (*data_deallocator)(void* data, size_t length);
} TF_Buffer;
typedef struct TF_Output { TF_Operation* oper; int index; } TF_Output;
typedef struct TF_TString { uint8_t raw[24]; } TF_TString;

static struct {
  void* handle;
  const char* (*Version)(void);
  TF_Status* (*NewStatus)(void);
  void (*DeleteStatus)(TF_Status*);
  int (*GetCode)(const TF_Status*);
  const char* (*Message)(const TF_Status*);
  TF_Buffer* (*NewBuffer)(void);
  void (*DeleteBuffer)(TF_Buffer*);
  TF_Graph* (*NewGraph)(void);
  void (*DeleteGraph)(TF_Graph*);
  TF_Operation* (*GraphOperationByName)(TF_Graph*, const char*);
  int (*OperationNumOutputs)(TF_Operation*);
  TF_SessionOptions* (*NewSessionOptions)(void);
  void (*DeleteSessionOptions)(TF_SessionOptions*);
  void (*SetConfig)(TF_SessionOptions*, const void*, size_t, TF_Status*);
  TF_Session* (*LoadSessionFromSavedModel)(const TF_SessionOptions*, const TF_Buffer*, const char*,
      const char* const*, int, TF_Graph*, TF_Buffer*, TF_Status*);
  void (*CloseSession)(TF_Session*, TF_Status*);
  void (*DeleteSession)(TF_Session*, TF_Status*);
  void (*SessionRun)(TF_Session*, const TF_Buffer*, const TF_Output*, TF_Tensor* const*, int,
      const TF_Output*, TF_Tensor**, int, const TF_Operation* const*, int, TF_Buffer*, TF_Status*);
  TF_Tensor* (*AllocateTensor)(int, const int64_t*, int, size_t);
  void (*DeleteTensor)(TF_Tensor*);
  int (*TensorType)(const TF_Tensor*);
  int (*NumDims)(const TF_Tensor*);
  int64_t (*Dim)(const TF_Tensor*, int);
  size_t (*TensorByteSize)(const TF_Tensor*);
  void* (*TensorData)(const TF_Tensor*);
  int64_t (*TensorElementCount)(const TF_Tensor*);
  void (*StringInit)(TF_TString*);
  void (*StringCopy)(TF_TString*, const char*, size_t);
  const char* (*StringGetDataPointer)(const TF_TString*);
  size_t (*StringGetSize)(const TF_TString*);
  void (*StringDealloc)(TF_TString*);
} tf;

#define TF_SYM(field, name) \
  if ((*(void**)(&tf.field) = dlsym(h, name)) == NULL) { missing = name; goto fail; }

// helix_tf_load opens the library and resolves every symbol; on failure it
// returns a static message (dlerror's, or the missing symbol's name).
static const char* helix_tf_load(const char* path, const char** missing_out) {
  const char* missing = NULL;
  void* h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) return dlerror();
  TF_SYM(Version, "TF_Version")
  TF_SYM(NewStatus, "TF_NewStatus")
  TF_SYM(DeleteStatus, "TF_DeleteStatus")
  TF_SYM(GetCode, "TF_GetCode")
  TF_SYM(Message, "TF_Message")
  TF_SYM(NewBuffer, "TF_NewBuffer")
  TF_SYM(DeleteBuffer, "TF_DeleteBuffer")
  TF_SYM(NewGraph, "TF_NewGraph")
  TF_SYM(DeleteGraph, "TF_DeleteGraph")
  TF_SYM(GraphOperationByName, "TF_GraphOperationByName")
  TF_SYM(OperationNumOutputs, "TF_OperationNumOutputs")
  TF_SYM(NewSessionOptions, "TF_NewSessionOptions")
  TF_SYM(DeleteSessionOptions, "TF_DeleteSessionOptions")
  TF_SYM(SetConfig, "TF_SetConfig")
  TF_SYM(LoadSessionFromSavedModel, "TF_LoadSessionFromSavedModel")
  TF_SYM(CloseSession, "TF_CloseSession")
  TF_SYM(DeleteSession, "TF_DeleteSession")
  TF_SYM(SessionRun, "TF_SessionRun")
  TF_SYM(AllocateTensor, "TF_AllocateTensor")
  TF_SYM(DeleteTensor, "TF_DeleteTensor")
  TF_SYM(TensorType, "TF_TensorType")
  TF_SYM(NumDims, "TF_NumDims")
  TF_SYM(Dim, "TF_Dim")
  TF_SYM(TensorByteSize, "TF_TensorByteSize")
  TF_SYM(TensorData, "TF_TensorData")
  TF_SYM(TensorElementCount, "TF_TensorElementCount")
  TF_SYM(StringInit, "TF_StringInit")
  TF_SYM(StringCopy, "TF_StringCopy")
  TF_SYM(StringGetDataPointer, "TF_StringGetDataPointer")
  TF_SYM(StringGetSize, "TF_StringGetSize")
  TF_SYM(StringDealloc, "TF_StringDealloc")
  tf.handle = h;
  return NULL;
fail:
  *missing_out = missing;
  dlclose(h);
  return "symbol not found";
}

static const char* helix_tf_version(void) { return tf.Version(); }

// helix_tf_error copies a failed status's message into a malloc'd string
// (NULL when the status is OK) and deletes the status.
static char* helix_tf_error(TF_Status* s) {
  char* msg = NULL;
  if (tf.GetCode(s) != 0) {
    const char* m = tf.Message(s);
    size_t n = strlen(m);
    msg = malloc(n + 32);
    snprintf(msg, n + 32, "code %d: %s", tf.GetCode(s), m);
  }
  tf.DeleteStatus(s);
  return msg;
}

// helix_tf_load_saved_model loads export_dir's meta graph tagged tag into a
// new session; meta receives the serialized MetaGraphDef (free with
// helix_tf_free_buffer).
static char* helix_tf_load_saved_model(const char* export_dir, const char* tag, const void* config,
    size_t config_len, TF_Session** session_out, TF_Graph** graph_out, TF_Buffer** meta_out) {
  TF_Status* s = tf.NewStatus();
  TF_SessionOptions* opts = tf.NewSessionOptions();
  tf.SetConfig(opts, config, config_len, s);
  if (tf.GetCode(s) != 0) {
    tf.DeleteSessionOptions(opts);
    return helix_tf_error(s);
  }
  TF_Graph* g = tf.NewGraph();
  TF_Buffer* meta = tf.NewBuffer();
  const char* tags[1] = {tag};
  TF_Session* sess = tf.LoadSessionFromSavedModel(opts, NULL, export_dir, tags, 1, g, meta, s);
  tf.DeleteSessionOptions(opts);
  char* err = helix_tf_error(s);
  if (err != NULL) {
    if (sess != NULL) {
      TF_Status* s2 = tf.NewStatus();
      tf.DeleteSession(sess, s2);
      tf.DeleteStatus(s2);
    }
    tf.DeleteGraph(g);
    tf.DeleteBuffer(meta);
    return err;
  }
  *session_out = sess;
  *graph_out = g;
  *meta_out = meta;
  return NULL;
}

static void helix_tf_free_buffer(TF_Buffer* b) { tf.DeleteBuffer(b); }
static const void* helix_tf_buffer_data(TF_Buffer* b) { return b->data; }
static size_t helix_tf_buffer_len(TF_Buffer* b) { return b->length; }

static char* helix_tf_close(TF_Session* sess, TF_Graph* g) {
  TF_Status* s = tf.NewStatus();
  tf.CloseSession(sess, s);
  char* err = helix_tf_error(s);
  s = tf.NewStatus();
  tf.DeleteSession(sess, s);
  char* err2 = helix_tf_error(s);
  tf.DeleteGraph(g);
  if (err == NULL) return err2;
  free(err2);
  return err;
}

// helix_tf_output finds "op" output index; -1: no such operation, -2: the
// operation has too few outputs.
static int helix_tf_output(TF_Graph* g, const char* op, int index, TF_Output* out) {
  TF_Operation* o = tf.GraphOperationByName(g, op);
  if (o == NULL) return -1;
  if (index < 0 || index >= tf.OperationNumOutputs(o)) return -2;
  out->oper = o;
  out->index = index;
  return 0;
}

// helix_tf_new_tensor allocates a tensor and copies len bytes of data in.
static TF_Tensor* helix_tf_new_tensor(int dtype, const int64_t* dims, int ndims, const void* data, size_t len) {
  TF_Tensor* t = tf.AllocateTensor(dtype, dims, ndims, len);
  if (t != NULL && len > 0) memcpy(tf.TensorData(t), data, len);
  return t;
}

// helix_tf_new_string_tensor builds a TF_STRING tensor of n elements from
// Triton's serialization (each element a 4-byte little-endian length and
// its bytes), which the caller has already checked.
static TF_Tensor* helix_tf_new_string_tensor(const int64_t* dims, int ndims, int64_t n, const uint8_t* data) {
  TF_Tensor* t = tf.AllocateTensor(7, dims, ndims, (size_t)n * sizeof(TF_TString));
  if (t == NULL) return NULL;
  TF_TString* ts = (TF_TString*)tf.TensorData(t);
  for (int64_t i = 0; i < n; i++) {
    uint32_t len = (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 | (uint32_t)data[3] << 24;
    tf.StringInit(&ts[i]);
    tf.StringCopy(&ts[i], (const char*)data + 4, len);
    data += 4 + len;
  }
  return t;
}

// helix_tf_string_size is the size of a TF_STRING tensor in Triton's
// serialization.
static size_t helix_tf_string_size(TF_Tensor* t) {
  int64_t n = tf.TensorElementCount(t);
  const TF_TString* ts = (const TF_TString*)tf.TensorData(t);
  size_t size = 0;
  for (int64_t i = 0; i < n; i++) size += 4 + tf.StringGetSize(&ts[i]);
  return size;
}

static void helix_tf_string_copy(TF_Tensor* t, uint8_t* out) {
  int64_t n = tf.TensorElementCount(t);
  const TF_TString* ts = (const TF_TString*)tf.TensorData(t);
  for (int64_t i = 0; i < n; i++) {
    size_t len = tf.StringGetSize(&ts[i]);
    out[0] = len; out[1] = len >> 8; out[2] = len >> 16; out[3] = len >> 24;
    memcpy(out + 4, tf.StringGetDataPointer(&ts[i]), len);
    out += 4 + len;
  }
}

// helix_tf_delete_tensor frees a tensor; a TF_STRING tensor's strings
// first (TF_DeleteTensor does not free what TF_StringCopy allocated for
// the tensors this worker made).
static void helix_tf_delete_tensor(TF_Tensor* t, int strings) {
  if (t == NULL) return;
  if (strings) {
    int64_t n = tf.TensorElementCount(t);
    TF_TString* ts = (TF_TString*)tf.TensorData(t);
    for (int64_t i = 0; i < n; i++) tf.StringDealloc(&ts[i]);
  }
  tf.DeleteTensor(t);
}

static char* helix_tf_run(TF_Session* sess, const TF_Output* in, TF_Tensor* const* in_values, int nin,
    const TF_Output* out, TF_Tensor** out_values, int nout) {
  TF_Status* s = tf.NewStatus();
  tf.SessionRun(sess, NULL, in, in_values, nin, out, out_values, nout, NULL, 0, NULL, s);
  return helix_tf_error(s);
}

static int helix_tf_tensor_type(TF_Tensor* t) { return tf.TensorType(t); }
static int helix_tf_num_dims(TF_Tensor* t) { return tf.NumDims(t); }
static int64_t helix_tf_dim(TF_Tensor* t, int i) { return tf.Dim(t, i); }
static size_t helix_tf_byte_size(TF_Tensor* t) { return tf.TensorByteSize(t); }
static void* helix_tf_data(TF_Tensor* t) { return tf.TensorData(t); }
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// loadLibrary resolves the C API from the library at path (libtensorflow_cc.so.2,
// which pulls in libtensorflow_framework.so.2 from its own folder) and
// returns TensorFlow's version. It is called once per process.
func loadLibrary(path string) (string, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var missing *C.char
	if msg := C.helix_tf_load(cpath, &missing); msg != nil {
		if missing != nil {
			return "", fmt.Errorf("%s: %s %s", path, C.GoString(msg), C.GoString(missing))
		}
		return "", errors.New(C.GoString(msg))
	}
	return C.GoString(C.helix_tf_version()), nil
}

// cError turns a malloc'd message from the shim into an error (nil for NULL).
func cError(msg *C.char) error {
	if msg == nil {
		return nil
	}
	defer C.free(unsafe.Pointer(msg))
	return errors.New(C.GoString(msg))
}

// session is one loaded SavedModel.
type session struct {
	sess  *C.TF_Session
	graph *C.TF_Graph
}

// loadSavedModel loads dir's meta graph tagged tag with the serialized
// ConfigProto config, returning the session and the MetaGraphDef's bytes.
func loadSavedModel(dir, tag string, config []byte) (*session, []byte, error) {
	cdir, ctag := C.CString(dir), C.CString(tag)
	defer C.free(unsafe.Pointer(cdir))
	defer C.free(unsafe.Pointer(ctag))
	var cfg unsafe.Pointer
	if len(config) > 0 {
		cfg = C.CBytes(config)
		defer C.free(cfg)
	}
	var (
		s    *C.TF_Session
		g    *C.TF_Graph
		meta *C.TF_Buffer
	)
	if err := cError(C.helix_tf_load_saved_model(cdir, ctag, cfg, C.size_t(len(config)), &s, &g, &meta)); err != nil {
		return nil, nil, err
	}
	defer C.helix_tf_free_buffer(meta)
	metaBytes := C.GoBytes(C.helix_tf_buffer_data(meta), C.int(C.helix_tf_buffer_len(meta)))
	return &session{sess: s, graph: g}, metaBytes, nil
}

func (s *session) close() error {
	return cError(C.helix_tf_close(s.sess, s.graph))
}

// output resolves a tensor of the graph by operation name and output index.
func (s *session) output(op string, index int) (tfOutput, error) {
	cop := C.CString(op)
	defer C.free(unsafe.Pointer(cop))
	var out C.TF_Output
	switch C.helix_tf_output(s.graph, cop, C.int(index), &out) {
	case -1:
		return out, fmt.Errorf("the graph has no operation %q", op)
	case -2:
		return out, fmt.Errorf("operation %q has no output %d", op, index)
	}
	return out, nil
}

// tfTensor is a tensor in TensorFlow's memory.
type tfTensor = *C.TF_Tensor

// tfOutput names one output of a graph operation.
type tfOutput = C.TF_Output

func newTensor(dtype int, shape []int64, data []byte) tfTensor {
	var dims *C.int64_t
	if len(shape) > 0 {
		dims = (*C.int64_t)(unsafe.Pointer(&shape[0]))
	}
	var p unsafe.Pointer
	if len(data) > 0 {
		p = unsafe.Pointer(&data[0])
	}
	return C.helix_tf_new_tensor(C.int(dtype), dims, C.int(len(shape)), p, C.size_t(len(data)))
}

// newStringTensor builds a TF_STRING tensor of n elements from data in
// Triton's serialization (checked by the caller).
func newStringTensor(shape []int64, n int64, data []byte) tfTensor {
	var dims *C.int64_t
	if len(shape) > 0 {
		dims = (*C.int64_t)(unsafe.Pointer(&shape[0]))
	}
	var p *C.uint8_t
	if len(data) > 0 {
		p = (*C.uint8_t)(unsafe.Pointer(&data[0]))
	}
	return C.helix_tf_new_string_tensor(dims, C.int(len(shape)), C.int64_t(n), p)
}

func deleteTensor(t tfTensor, strings bool) {
	s := C.int(0)
	if strings {
		s = 1
	}
	C.helix_tf_delete_tensor(t, s)
}

// run feeds inputs and fetches outputs; on success every element of
// outValues holds a tensor the caller deletes.
func (s *session) run(in []tfOutput, inValues []tfTensor, out []tfOutput, outValues []tfTensor) error {
	var pin *C.TF_Output
	var pinv **C.TF_Tensor
	if len(in) > 0 {
		pin, pinv = &in[0], &inValues[0]
	}
	return cError(C.helix_tf_run(s.sess, pin, pinv, C.int(len(in)), &out[0], &outValues[0], C.int(len(out))))
}

// tensorInfo reads an output tensor's type and shape.
func tensorInfo(t tfTensor) (dtype int, shape []int64) {
	n := int(C.helix_tf_num_dims(t))
	shape = make([]int64, n)
	for i := range shape {
		shape[i] = int64(C.helix_tf_dim(t, C.int(i)))
	}
	return int(C.helix_tf_tensor_type(t)), shape
}

// tensorBytes copies a fixed-size tensor's data out.
func tensorBytes(t tfTensor) []byte {
	n := C.helix_tf_byte_size(t)
	if n == 0 {
		return []byte{}
	}
	return C.GoBytes(C.helix_tf_data(t), C.int(n))
}

// stringTensorBytes serializes a TF_STRING tensor as Triton does.
func stringTensorBytes(t tfTensor) []byte {
	out := make([]byte, int(C.helix_tf_string_size(t)))
	if len(out) > 0 {
		C.helix_tf_string_copy(t, (*C.uint8_t)(unsafe.Pointer(&out[0])))
	}
	return out
}
