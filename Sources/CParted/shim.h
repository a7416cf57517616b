#ifndef CPARTED_SHIM_H
#define CPARTED_SHIM_H
#include <parted/parted.h>
#endif
